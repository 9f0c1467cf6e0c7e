"""``amc.leaderboard``: runs found in any folder layout, means and CIs checked against scipy, bad input refused."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats

from amc.leaderboard import main
from amc.reporting.leaderboard import (
    difference_ci,
    figure,
    find_runs,
    markdown,
    mean_ci,
    paired_difference_ci,
    table_rows,
)
from amc.settings import SearchConfig, field_default


def fake_run(
    folder: Path,
    agent: str,
    seed: int,
    after: float,
    budget: float = 0.25,
    probes: int = 0,
    model: str = "mobilenet_v1",
    cpu_s: float | None = None,
    cpu_budget: float | None = None,
) -> None:
    """A finished search's files as the search writes them (only what the leaderboard reads); ``cpu_s``: each
    episode's CPU seconds (runs recorded before them have none)."""
    folder.mkdir(parents=True)
    config = {"agent": {"name": agent}, "seed": seed, "score": "lsq", "data": {"name": "fashion_mnist"}}
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "search_cpu_s": cpu_budget}))
    rows = [{"episode": i + 1, "evaluation": probes + i + 1, "accuracy": 80 + i, "wall_s": 2.0} for i in range(3)]
    if cpu_s is not None:
        rows = [{**row, "cpu_s": cpu_s} for row in rows]
    (folder / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if probes:
        extra = [{"probe": i + 1, "evaluation": i + 1, "accuracy": 50.0, "wall_s": 1.0} for i in range(probes)]
        (folder / "probes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
    strategy = {"constraint": "flops", "budget": budget, "seed": seed, "accuracy": 82.0, "test_top1": after - 1,
                "macs_ratio": budget - 0.001, "finetuned_test_top1": after, "promotion": {"cost_s": 10.0},
                "model": model, "base_test_top1": 93.6}  # fmt: skip
    (folder / "strategy.json").write_text(json.dumps(strategy))


def test_mean_and_interval_match_scipy():
    values = [90.1, 90.7, 89.9, 90.4]
    mean, half = mean_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values), scale=stats.sem(values))
    assert math.isclose(mean, (low + high) / 2) and math.isclose(half, (high - low) / 2)
    assert math.isnan(mean_ci([90.0])[1])  # one seed is an anecdote: no interval


def test_difference_interval_is_welchs():
    a, b = [91.0, 91.4, 90.8], [90.1, 90.3, 90.2, 90.0]
    diff, half = difference_ci(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert math.isclose(diff, (low + high) / 2) and math.isclose(half, (high - low) / 2, rel_tol=1e-9)


def test_the_same_seeds_interval_is_a_paired_t_interval_over_the_shared_seeds():
    a, b = {1: 91.0, 2: 91.4, 3: 90.8, 4: 92.0}, {1: 90.7, 2: 91.2, 3: 90.4, 5: 89.0}  # seeds 4 and 5 unpaired
    diff, half, pairs = paired_difference_ci(a, b)
    paired = stats.ttest_rel([91.0, 91.4, 90.8], [90.7, 91.2, 90.4])
    low, high = paired.confidence_interval(0.95)
    assert pairs == 3 and math.isclose(diff, (low + high) / 2) and math.isclose(half, (high - low) / 2)
    # a shift shared by both sides within each seed moves neither the paired mean nor its interval
    shifted = paired_difference_ci({k: v + k for k, v in a.items()}, {k: v + k for k, v in b.items()})
    assert math.isclose(shifted[0], diff) and math.isclose(shifted[1], half)
    assert math.isnan(paired_difference_ci({1: 91.0}, {1: 90.0})[1])  # one pair: no interval


def test_runs_in_any_layout_are_grouped_by_budget_and_method(tmp_path):
    for seed, after in zip((1, 2, 3), (91.0, 91.4, 90.8), strict=True):
        fake_run(tmp_path / "sweep" / f"job{seed}", "ddpg", seed, after, probes=0)
        fake_run(tmp_path / "single" / f"uniform_{seed}", "uniform", seed, 90.2)
    fake_run(tmp_path / "single" / "unfinished", "random", 1, 90.0)
    fake_run(tmp_path / "single" / "not_amcs", "random", 1, 90.0)  # another tool's files of the same names
    (tmp_path / "single" / "not_amcs" / "strategy.json").write_text('{"test_top1": 1, "layers": [')
    (tmp_path / "single" / "unfinished" / "strategy.json").write_text(json.dumps({"accuracy": 80}))  # still running
    runs = find_runs([tmp_path / "sweep", tmp_path / "single", tmp_path])  # overlapping folders: each run once
    assert len(runs) == 6
    rows = {r["method"]: r for r in table_rows(runs)}
    assert set(rows) == {"ddpg", "uniform"} and rows["ddpg"]["seeds"] == [1, 2, 3]
    diff, half = difference_ci([91.0, 91.4, 90.8], [90.2] * 3)
    assert rows["ddpg"]["delta_uniform"].startswith(f"{diff:+.2f} ± {half:.2f}")
    diff, half, _ = paired_difference_ci({1: 91.0, 2: 91.4, 3: 90.8}, {1: 90.2, 2: 90.2, 3: 90.2})
    assert rows["ddpg"]["paired_delta_uniform"].startswith(f"{diff:+.2f} ± {half:.2f}")


def test_runs_of_different_networks_are_never_averaged_or_compared_together(tmp_path):
    for seed in (1, 2):
        fake_run(tmp_path / f"mbv1_ddpg_{seed}", "ddpg", seed, 91.0 + seed)
        fake_run(tmp_path / f"mbv1_uniform_{seed}", "uniform", seed, 90.0)
        fake_run(tmp_path / f"resnet_ddpg_{seed}", "ddpg", seed, 70.0, model="resnet18")  # no uniform of its own
    rows = table_rows(find_runs([tmp_path]))
    assert [(r["base"], r["method"]) for r in rows] == [
        ("mobilenet_v1 on fashion_mnist, base 93.60 % test top-1", "ddpg"),
        ("mobilenet_v1 on fashion_mnist, base 93.60 % test top-1", "uniform"),
        ("resnet18 on fashion_mnist, base 93.60 % test top-1", "ddpg"),
    ]
    assert rows[0]["test_after"].startswith("92.50 ±") and rows[2]["test_after"].startswith("70.00")
    assert rows[2]["delta_uniform"] == "—" and rows[2]["paired_delta_uniform"] == "—"
    assert main([str(tmp_path), f"output={tmp_path / 'board'}"]) == 0
    board = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "## mobilenet_v1 on fashion_mnist" in board and "## resnet18 on fashion_mnist" in board


def test_a_pipelines_kd_finetuning_of_pruned_pt_is_the_after_ft_score(tmp_path):
    """amc.pipeline keeps its searches in amc/ and uniform/ and their fine-tunings beside them (amc_kd/, amc_ce/)."""
    root = tmp_path / "pipeline" / "seed_1"
    fake_run(root / "amc", "ddpg", 1, 0.0)
    strategy = json.loads((root / "amc" / "strategy.json").read_text())
    del strategy["finetuned_test_top1"]  # no promotion: the fine-tuning is a stage of its own
    (root / "amc" / "strategy.json").write_text(json.dumps(strategy))
    for name, kind, top1 in (("amc_kd", "kd", 91.5), ("amc_ce", "ce", 92.5)):
        (root / name).mkdir()
        config = {"checkpoint": str(root / "amc" / "pruned.pt"), "distill": {"kind": kind}}
        (root / name / "config.yaml").write_text(yaml.safe_dump(config))
        (root / name / "summary.json").write_text(json.dumps({"last": {"test_top1": top1}}))
    for name, text in (("notes", "[1, 2]"), ("broken", "{not json")):  # other files of that name are passed over
        (root / name).mkdir()
        (root / name / "config.yaml").write_text(text)
        (root / name / "summary.json").write_text(text)
    (run,) = find_runs([tmp_path / "pipeline"])
    assert run.test_after == 91.5  # the KD one; CE is not the leaderboard's fine-tuning
    (root / "amc_kd" / "summary.json").unlink()
    (run,) = find_runs([tmp_path / "pipeline"])
    assert run.test_after is None


def test_a_seed_run_twice_is_pointed_out(tmp_path):
    fake_run(tmp_path / "a", "ddpg", 1, 91.0)
    fake_run(tmp_path / "b", "ddpg", 1, 91.0)  # the same search again, in another dir
    fake_run(tmp_path / "c", "ddpg", 2, 91.2)
    board = markdown(find_runs([tmp_path]))
    assert board.count("**Repeated seed:**") == 1
    group = "ddpg at flops 0.25 (mobilenet_v1 on fashion_mnist, base 93.60 % test top-1)"
    assert f"{group} ran seed 1 in 2 run dirs: {tmp_path / 'a'}, {tmp_path / 'b'}" in board


def test_probes_count_as_evaluations_and_the_curve_starts_at_the_first_episode(tmp_path):
    fake_run(tmp_path / "s", "sensitivity", 1, 90.0, probes=4)
    (run,) = find_runs([tmp_path])
    assert run.evaluations == 7
    assert all(math.isnan(v) for v in run.best_so_far[:4]) and run.best_so_far[4:] == [80, 81, 82]


def test_a_method_keeps_its_colour_in_every_budget_panel(tmp_path):
    fake_run(tmp_path / "a", "random", 1, 90.0, budget=0.25)
    fake_run(tmp_path / "b", "ddpg", 1, 90.0, budget=0.5)
    fake_run(tmp_path / "c", "random", 1, 90.0, budget=0.5)  # second in its panel, first in the other
    lines = [line for ax in figure(find_runs([tmp_path])).axes for line in ax.get_lines()]
    colours = {
        method: {ln.get_color() for ln in lines if ln.get_label().startswith(method)} for method in ("random", "ddpg")
    }
    assert len(colours["random"]) == 1 and colours["random"] != colours["ddpg"]
    assert "random (1 run)" in {line.get_label() for line in lines}


def test_the_cli_writes_table_and_plot_and_refuses_bad_input(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "a", "ddpg", 1, 91.0)
    assert main([str(tmp_path / "runs"), f"output={tmp_path / 'board'}"]) == 0
    assert "| flops 0.25 | ddpg |" in (tmp_path / "board" / "leaderboard.md").read_text()
    assert (tmp_path / "board" / "leaderboard.png").stat().st_size > 0
    for argv in ([], [str(tmp_path / "nowhere")], [str(tmp_path / "board")], [str(tmp_path), "outptu=x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("score", ["adabn", "lsq+adabn"])
def test_a_non_default_evaluator_is_its_own_row(tmp_path, score):
    fake_run(tmp_path / "r", "random", 1, 90.0)
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump({**config, "score": score}))
    (run,) = find_runs([tmp_path])
    assert run.method == f"random [{score}]"


def test_two_step_counts_of_a_distilling_evaluator_are_two_rows(tmp_path):
    for name, steps in (("a", 20), ("b", 200), ("c", None)):
        fake_run(tmp_path / name, "ddpg", 1, 90.0)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config.update({"score": "lsq+kd+kl"} | ({} if steps is None else {"kd_steps": steps}))
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    methods = {run.method for run in find_runs([tmp_path])}
    default = field_default(SearchConfig, "kd_steps")
    assert methods == {"ddpg [lsq+kd20+kl]", "ddpg [lsq+kd200+kl]", f"ddpg [lsq+kd{default}+kl]"}


def test_cpu_seconds_are_summed_shown_and_plotted_against_the_finetuned_top1(tmp_path):
    fake_run(tmp_path / "d1", "ddpg", 1, 91.0, cpu_s=2.0, cpu_budget=6.0)
    fake_run(tmp_path / "d2", "ddpg", 2, 92.0, cpu_s=4.0, cpu_budget=12.0)
    fake_run(tmp_path / "u", "uniform", 1, 90.0, cpu_s=1.0)
    fake_run(tmp_path / "old", "random", 1, 89.0)  # recorded before CPU seconds were: no point, a dash
    runs = {r.method: r for r in find_runs([tmp_path]) if r.seed == 1}
    assert runs["ddpg"].cpu_s == 6.0 and runs["uniform"].cpu_s == 3.0 and runs["random"].cpu_s is None
    rows = {r["method"]: r for r in table_rows(find_runs([tmp_path]))}
    assert rows["ddpg"]["cpu_s"].startswith("9 ±") and rows["random"]["cpu_s"] == "—"
    axes = figure(find_runs([tmp_path])).axes
    assert len(axes) == 2 and "CPU seconds" in axes[1].get_xlabel()
    ddpg_line = next(line for line in axes[1].get_lines() if line.get_label().startswith("ddpg"))
    assert list(ddpg_line.get_xdata()) == [6.0, 12.0] and list(ddpg_line.get_ydata()) == [91.0, 92.0]
    assert not any(line.get_label().startswith("random") for line in axes[1].get_lines())


def test_runs_without_cpu_seconds_get_one_panel_per_budget(tmp_path):
    fake_run(tmp_path / "a", "random", 1, 90.0)
    assert len(figure(find_runs([tmp_path])).axes) == 1


STUDIES = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "experiments").glob("*/runs"))


@pytest.mark.parametrize("study", [s for s in STUDIES if (s / "leaderboard.md").is_file()], ids=lambda s: s.name)
def test_a_committed_leaderboard_is_what_its_committed_runs_give(study, tmp_path, capsys):
    """From a fresh clone, ``python -m amc.leaderboard experiments/STUDY/runs`` writes the committed table back."""
    assert main([str(study / "runs"), f"output={tmp_path}"]) == 0
    assert (tmp_path / "leaderboard.md").read_text() == (study / "leaderboard.md").read_text()


def test_two_sets_of_rungs_of_a_multi_fidelity_search_are_two_rows(tmp_path):
    for name, rungs in (("a", [0, 20, 60, 200]), ("b", [0, 20, 60])):
        fake_run(tmp_path / name, "hyperband", 1, 90.0)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config["agent"]["options"] = {"rungs": rungs, "pruner": "successive_halving"}
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    methods = {run.method for run in find_runs([tmp_path])}
    assert methods == {"hyperband (rungs 0,20,60,200)", "hyperband (rungs 0,20,60)"}


def test_a_search_around_a_start_point_is_its_own_row(tmp_path):
    for name, options in (("a", {"start": None, "radius": 0.3}), ("b", {"start": "uniform", "radius": 0.3}), ("c", {})):
        fake_run(tmp_path / name, "optuna", 1, 90.0)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config["agent"] |= {"sampler": "cmaes", "options": options}
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    assert sorted(run.method for run in find_runs([tmp_path])) == [
        "optuna-cmaes", "optuna-cmaes", "optuna-cmaes (around uniform)"
    ]  # fmt: skip
