"""``amc.search`` end to end on the smoke preset: outputs, budget, determinism, resume, baselines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from amc import models
from amc.errors import ConfigError
from amc.pruning.slicing import slice_model
from amc.pruning.structure import analyse
from tests.conftest import ROOT, assert_clean_error, run_module

pytestmark = pytest.mark.slow  # end-to-end runs of the entry points


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("amc-cache")


def smoke(run_dir: Path, cache: Path, *extra: str):
    proc = run_module(
        "amc.search", "experiment=smoke", "seed=7", f"cache_dir={cache}", f"hydra.run.dir={run_dir}", *extra
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cache) -> Path:
    run_dir = tmp_path_factory.mktemp("search") / "run"
    proc = smoke(run_dir, cache)
    assert "training a base" in proc.stdout  # no checkpoint on the default: one is trained and cached
    # an episode's cost is reported against evaluating the unpruned base on the same images, timed in the run
    assert re.search(
        r"on the same \d+ search-val images takes [\d.]+ s in float32( / [\d.]+ s in bfloat16)?: "
        r"a median episode costs [\d.]+( / [\d.]+)? of that",
        proc.stdout,
    )
    return run_dir


def test_search_writes_its_outputs(first_run):
    for name in (
        "config.yaml",
        "strategy.json",
        "pruned.pt",
        "episodes.jsonl",
        "episodes.csv",
        "strategy.png",
        "episodes.png",
    ):
        assert (first_run / name).is_file(), name
    strategy = json.loads((first_run / "strategy.json").read_text())
    for key in (
        "flops_budget",
        "macs",
        "base_macs",
        "params",
        "channels",
        "keep_ratios",
        "accuracy",
        "episode",
        "base_checkpoint",
        "test_top1",
    ):
        assert key in strategy
    assert 0.49 <= strategy["macs"] / strategy["base_macs"] <= 0.5
    assert strategy["export_calibration_images"] > 200  # the export refits on more images than the search's 200
    rows = [json.loads(line) for line in (first_run / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["macs"] <= 0.5 * strategy["base_macs"] for r in rows)
    assert max(r["reward"] for r in rows) == rows[strategy["episode"] - 1]["reward"]
    pruned = models.load_checkpoint(first_run / "pruned.pt")
    assert sum(p.numel() for p in pruned.parameters()) == strategy["params"]
    assert pruned.checkpoint_metadata["data"] == "digits"  # what a later run on other data is refused by


def test_same_seed_same_strategy_and_cached_base(first_run, cache, tmp_path):
    proc = smoke(tmp_path / "again", cache)
    assert "using the cached base model" in proc.stdout
    a = json.loads((first_run / "strategy.json").read_text())
    b = json.loads((tmp_path / "again" / "strategy.json").read_text())
    assert a["channels"] == b["channels"] and a["accuracy"] == b["accuracy"]


def test_killed_search_resumes_to_the_same_result(first_run, cache, tmp_path):
    run_dir = tmp_path / "stopped"
    proc = smoke(run_dir, cache, "stop_after=5")
    assert "resume=" in proc.stdout and not (run_dir / "pruned.pt").exists()
    # a resume that would change what the search computes is refused, and leaves the run dir as it was
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    refused = run_module("amc.search", f"resume={run_dir}", "flops_budget=0.3")  # the exit path, once
    assert_clean_error(refused, "flops_budget=0.3 (it began with", "would change what it computes")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    for change in ("seed=8", "agent=random"):  # the same check, called as the entry point calls it
        with pytest.raises(ConfigError, match="would change what it computes: start a new run instead"):
            resumed_in_hydra(run_dir, change)
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    log = "search.log"  # the refusals' error lines are appended to the run's log; nothing else changes
    assert after[log].startswith(before[log]) and b"error: " in after[log][len(before[log]) :]
    assert {k: v for k, v in after.items() if k != log} == {k: v for k, v in before.items() if k != log}
    # continued as a sweep launched again does it: its own command line (an experiment group included) and
    # on_existing=continue; how it runs may change
    smoke(run_dir, cache, "threads=1", "on_existing=continue")
    full = [json.loads(line) for line in (first_run / "episodes.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["channels"] for r in full] == [r["channels"] for r in again]
    assert (
        json.loads((run_dir / "strategy.json").read_text())["channels"]
        == json.loads((first_run / "strategy.json").read_text())["channels"]
    )


def resumed_in_hydra(run_dir: Path, change: str) -> None:
    """``resumed_config`` as ``amc.search resume=RUN_DIR CHANGE`` calls it, with CHANGE on the command line."""
    from hydra import compose, initialize_config_dir

    from amc import config
    from amc.settings import SearchConfig

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("search", overrides=[f"resume={run_dir}", change])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "command_line_overrides", lambda: {change.split("=")[0]: change})
        config.resumed_config(cfg, SearchConfig, run_dir)


def test_a_finished_search_is_not_resumed_over_its_results(first_run):
    before = {name: (first_run / name).read_bytes() for name in ("strategy.json", "pruned.pt", "episodes.jsonl")}
    for extra in ([], ["episodes=20"]):
        proc = run_module("amc.search", f"resume={first_run}", *extra)
        assert_clean_error(proc, "this search has finished", "start a new run")
    assert {name: (first_run / name).read_bytes() for name in before} == before
    assert not (first_run / "resume-config.yaml").exists()


def episodes_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_parallel_workers_are_reproducible_and_resume(first_run, cache, tmp_path):
    """workers=2: two environments in subprocesses score strategies at once (SB3 SubprocVecEnv); the
    same seed gives the same episodes, and a stopped run resumes to them."""
    smoke(tmp_path / "a", cache, "workers=2", "episodes=10")
    stopped = smoke(tmp_path / "b", cache, "workers=2", "episodes=10", "stop_after=5")  # stops after the 3rd pair
    assert "resume=" in stopped.stdout and not (tmp_path / "b" / "pruned.pt").exists()
    resumed = run_module("amc.search", f"resume={tmp_path / 'b'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = episodes_of(tmp_path / "a"), episodes_of(tmp_path / "b")
    assert len(a) == len(b) == 10 and [r["channels"] for r in a] == [r["channels"] for r in b]
    assert [r["reward"] for r in a] == [r["reward"] for r in b]
    # after the warm-up (3 episodes) the agent explores on its own: the pairs differ from one worker's run
    serial = episodes_of(first_run)
    assert [r["channels"] for r in a[4:8]] != [r["channels"] for r in serial[4:8]]


@pytest.mark.parametrize("agent", ["random", "uniform"])
def test_baseline_agents_run_through_the_same_entry_point(agent, cache, tmp_path):
    smoke(tmp_path / agent, cache, f"agent={agent}")
    strategy = json.loads((tmp_path / agent / "strategy.json").read_text())
    assert strategy["agent"] == agent and strategy["macs"] <= 0.5 * strategy["base_macs"]


def test_a_search_given_cpu_seconds_stops_when_its_evaluations_have_used_them_and_exports(cache, tmp_path):
    proc = smoke(tmp_path / "cpu", cache, "agent=random", "episodes=200", "search_cpu_s=0.5")
    rows = episodes_of(tmp_path / "cpu")
    assert 1 <= len(rows) < 200 and all(r["cpu_s"] > 0 for r in rows)
    spent = sum(r["cpu_s"] for r in rows)
    assert spent >= 0.5 and spent - rows[-1]["cpu_s"] < 0.5  # the evaluation that crossed the budget is the last
    strategy = json.loads((tmp_path / "cpu" / "strategy.json").read_text())
    assert strategy["macs"] <= 0.5 * strategy["base_macs"] and (tmp_path / "cpu" / "pruned.pt").is_file()
    assert f"stopped after {len(rows)} of 200 evaluations" in proc.stdout + proc.stderr


def test_cpu_seconds_spent_on_probes_alone_are_one_line_that_names_them(cache, tmp_path):
    """Sensitivity probes first; CPU seconds that end among its probes leave no strategy to export."""
    proc = run_module(
        "amc.search", "experiment=smoke", "seed=7", f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}",
        "agent=sensitivity", "episodes=1000", "search_cpu_s=0.01",
    )  # fmt: skip
    assert proc.returncode == 3  # NoStrategyError's own code: a driving script tells it from bad input (2)
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert "scored no strategy within the budget in its search_cpu_s=0.01 CPU seconds (1 evaluations)" in line
    assert line.endswith("raise search_cpu_s") and "Traceback" not in proc.stderr


def test_finalists_are_rebuilt_as_exported_and_the_best_kept(cache, tmp_path):
    smoke(tmp_path / "final", cache, "agent=random", "export_candidates=3", "eval_precision=bfloat16")
    strategy = json.loads((tmp_path / "final" / "strategy.json").read_text())
    assert strategy["scored_in"] == "bfloat16"
    finalists = strategy["export_finalists"]
    rows = [json.loads(line) for line in (tmp_path / "final" / "episodes.jsonl").read_text().splitlines()]
    by_episode = {r["episode"]: r for r in rows}
    assert len(finalists) == 3 and len({tuple(by_episode[f["episode"]]["channels"]) for f in finalists}) == 3
    distinct = {tuple(r["channels"]): r["accuracy"] for r in reversed(rows)}
    assert [f["search_score"] for f in finalists] == sorted(distinct.values(), reverse=True)[:3]
    kept = max(finalists, key=lambda f: f["export_search_val_top1"])
    assert strategy["episode"] == kept["episode"] and strategy["channels"] == by_episode[kept["episode"]]["channels"]
    pruned = models.load_checkpoint(tmp_path / "final" / "pruned.pt")
    assert sum(p.numel() for p in pruned.parameters()) == strategy["params"]


def test_lsq_selection_is_exported_with_the_channels_it_scored(cache, tmp_path):
    """selection=lsq ranks channels on the search's calibration statistics; strategy.json keeps the indices it
    scored, and amc.export slices exactly those instead of re-ranking on its own calibration images."""
    smoke(tmp_path / "lsq", cache, "agent=random", "selection=lsq")
    strategy = json.loads((tmp_path / "lsq" / "strategy.json").read_text())
    assert strategy["selection"] == "lsq"
    kept = strategy["kept_channels"]
    assert [len(k) for k in kept] == strategy["channels"]
    proc = run_module(
        "amc.export",
        f"checkpoint={strategy['base_checkpoint']}",
        "data=digits",
        f"strategy={tmp_path / 'lsq' / 'strategy.json'}",
        "reconstruct=false",
        "evaluate=false",
        f"output={tmp_path / 'exported.pt'}",
        f"hydra.run.dir={tmp_path / 'export'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "export" / "export_summary.json").read_text())["selection"] == "lsq"
    base = models.load_checkpoint(strategy["base_checkpoint"]).eval()
    size = int(base.checkpoint_metadata["image_size"])
    structure = analyse(base, (1, 1, size, size))
    expected = slice_model(base, structure, [torch.tensor(k) for k in kept]).state_dict()
    exported = models.load_checkpoint(tmp_path / "exported.pt").state_dict()
    assert expected.keys() == exported.keys()
    assert all(torch.equal(expected[k], exported[k]) for k in expected)


def test_params_budget(cache, tmp_path):
    smoke(tmp_path / "params", cache, "params_budget=0.4", "agent=random")
    strategy = json.loads((tmp_path / "params" / "strategy.json").read_text())
    assert strategy["constraint"] == "params" and strategy["params"] <= 0.4 * strategy["base_params"]


def test_a_latency_budget_search_times_its_export_end_to_end(first_run, cache, tmp_path):
    """The table is measured and cached, new bests are timed in the timing process, and the exported network is
    timed again; all three figures land in strategy.json, and a second search reuses the cached table."""
    checkpoint = json.loads((first_run / "strategy.json").read_text())["base_checkpoint"]
    args = ("latency_budget=1.0", "episodes=4", f"checkpoint={checkpoint}")
    proc = smoke(tmp_path / "a", cache, *args)
    strategy = json.loads((tmp_path / "a" / "strategy.json").read_text())
    assert strategy["constraint"] == "latency" and strategy["budget"] == 1.0
    assert 0 < strategy["predicted_latency_ratio"] <= 1.0
    # the finalists timed for the export, best reward first, until one measured within the budget: that one is
    # exported. The tiny network's floor measures about 0.93 of the base, so at 1.0 clock noise decides whether any
    # fits (the check itself, on a clock-free timer: tests/strategy/test_budget.py)
    checks = strategy["export_latency_checks"]
    assert all(c["measured"] > 1.0 for c in checks[:-1])
    measured = {c["episode"]: c["measured"] for c in checks}
    assert strategy["measured_latency_ratio"] == measured[strategy["episode"]] > 0  # not timed again
    assert strategy["latency_budget_met"] == (checks[-1]["measured"] <= 1.0)
    if strategy["latency_budget_met"]:
        assert checks[-1]["episode"] == strategy["episode"]
    else:  # none fit: the search's best is exported, flagged, and the user is told
        assert checks[0]["episode"] == strategy["episode"]
        assert "the latency budget 1 is NOT met" in proc.stderr + proc.stdout
    timed = strategy["search_timed_latency_ratio"]  # None when the search never timed the exported one (not a best)
    assert timed is None or timed > 0
    assert "measured end to end" in proc.stdout and "Traceback" not in proc.stderr  # the timer exits cleanly
    log = (tmp_path / "a" / "search.log").read_text()
    assert "the smallest network the wall allows" in log
    # each probe logs both sides of its ratio, so a drifting base can be told from a slow network
    assert re.search(
        r"timed a new best end to end: [\d.]+ ms vs the base's [\d.]+ ms \(ratio [\d.]+;.*; the search process used "
        r"[\d.]+ s of CPU in the [\d.]+ s it waited",
        log,
    )
    again = smoke(tmp_path / "b", cache, *args, "stop_after=1")  # another process: the table is not measured again
    assert "using the cached latency table" in again.stdout


def test_a_bad_search_input_exits_with_one_line_before_any_work(cache, tmp_path):
    """The exit path of every refused setting (the settings themselves: tests/strategy/test_search_inputs.py)."""
    proc = run_module(
        "amc.search", "experiment=smoke", f"cache_dir={cache}", f"hydra.run.dir={tmp_path}", "flops_budget=0.01"
    )
    assert_clean_error(proc, "infeasible flops budget 0.01")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "strategy.json").exists()


def test_the_run_dir_log_holds_what_the_run_printed(first_run):
    """Everything a run prints also goes to its run dir's log file, the base training's child process included."""
    text = (first_run / "search.log").read_text()
    for line in (
        "training a base",
        "base epoch 1/",
        "searching ddpg",
        "best: episode",
        "median seconds per episode",
        "results in",
        "wall time",
    ):
        assert line in text, line


def test_promotion_fine_tunes_the_best_distinct_strategies_exports_the_winner_and_resumes(first_run, cache, tmp_path):
    """promote.top_k=2, half an epoch each: the two best distinct strategies by score are fine-tuned with KD, the
    one best on search-val afterwards is exported, the summary says what it cost; killed after the first
    candidate, a resume fine-tunes only the second and ends with the same result."""
    checkpoint = json.loads((first_run / "strategy.json").read_text())["base_checkpoint"]
    run = tmp_path / "promoted"
    proc = smoke(run, cache, f"checkpoint={checkpoint}", "promote.top_k=2", "promote.epochs=0.5")
    ranked = sorted(episodes_of(run), key=lambda r: (-r["reward"], r["episode"]))
    expected = [ranked[0], next(r for r in ranked if r["channels"] != ranked[0]["channels"])]
    promoted = [json.loads(line) for line in (run / "promotion.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in promoted] == [r["episode"] for r in expected]
    winner = max(promoted, key=lambda r: (r["finetuned_search_val_top1"], -r["episode"]))
    strategy = json.loads((run / "strategy.json").read_text())
    assert strategy["promotion"]["winner_episode"] == winner["episode"] and strategy["channels"] == winner["channels"]
    assert strategy["finetuned_test_top1"] == winner["finetuned_test_top1"]
    assert strategy["promotion"]["cost_s"] == pytest.approx(sum(r["finetune_s"] for r in promoted))
    assert re.search(r"promotion: 2 strategies fine-tuned 0.5 epochs each with KD \(\d+ s in all\)", proc.stdout)
    assert models.load_checkpoint(run / "finetuned.pt").checkpoint_metadata["promoted_episode"] == winner["episode"]
    # the state a kill after the first candidate leaves: its row on disk, the second's and the export's not
    (run / "promotion.jsonl").write_text(json.dumps(promoted[0]) + "\n")
    for name in ("strategy.json", "pruned.pt", "finetuned.pt"):
        (run / name).unlink()
    shutil.rmtree(run / "promotion" / f"episode_{promoted[1]['episode']}")
    resumed = run_module("amc.search", f"resume={run}", f"cache_dir={cache}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"promote episode {promoted[0]['episode']}" not in resumed.stdout + resumed.stderr
    assert f"promote episode {promoted[1]['episode']}" in resumed.stdout + resumed.stderr
    again = json.loads((run / "strategy.json").read_text())
    assert (again["channels"], again["finetuned_test_top1"]) == (strategy["channels"], strategy["finetuned_test_top1"])
