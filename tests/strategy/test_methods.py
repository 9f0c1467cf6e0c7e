"""Every search method behind the one runner interface: the budget on every episode, evaluations counted,
a kill -9 mid-way resumed to the same episodes, and a method plugged in through config alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from amc import models
from amc.pruning.counting import profile
from tests.conftest import ROOT, composed, run_module

pytestmark = pytest.mark.slow  # end-to-end runs of the entry point

EPISODES = 24
METHODS = {
    "ddpg": ["agent=ddpg"],
    "td3": ["agent=td3"],
    "sac": ["agent=sac"],
    "sensitivity": ["agent=sensitivity"],
    "greedy": ["agent=greedy"],
    "optuna-tpe": ["agent=optuna", "agent.sampler=tpe", "agent.warmup_episodes=5"],
    "optuna-cmaes": ["agent=optuna", "agent.sampler=cmaes", "agent.warmup_episodes=5"],
    "optuna-cmaes-uniform": ["agent=optuna", "agent.sampler=cmaes", "agent.options.start=uniform"],
    "hyperband": ["agent=hyperband", "agent.warmup_episodes=3", "agent.options.rungs=[0,4,12]"],
    "random": ["agent=random"],
    "random-lsq+kd+kl": ["agent=random", "score=lsq+kd+kl", "kd_steps=4"],  # the look-ahead evaluators
    "uniform": ["agent=uniform"],
}
COMMON = ["experiment=smoke", "flops_budget=0.4", f"episodes={EPISODES}", "seed=5", "threads=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("amc-cache")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def search_here(run_dir: Path, cache: Path, method: str, *extra: str) -> None:
    """A method's search run in this process, as the entry point runs it, without paying a process's imports; the
    entry point's own runs are the killed and resumed ones."""
    from amc.config import save_resolved_config
    from amc.strategy.checks import check_inputs
    from amc.strategy.loop import search

    settings = composed("search", *COMMON, *METHODS[method], f"cache_dir={cache}", *extra)
    check_inputs(settings)
    run_dir.mkdir(parents=True)
    save_resolved_config(OmegaConf.structured(settings), run_dir)  # a later run reads its probes' settings
    threads = torch.get_num_threads()
    try:
        search(settings, run_dir)
    finally:
        torch.set_num_threads(threads)  # the search set threads=1: the tests after it keep this worker's


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache):
    """Each method's uninterrupted search, run once: checked for the budget, and the reference a killed one
    must resume to."""
    runs: dict[str, Path] = {}

    def run_of(method: str) -> Path:
        if method not in runs:
            runs[method] = tmp_path_factory.mktemp(method) / "run"
            search_here(runs[method], cache, method)
        return runs[method]

    return run_of


@pytest.mark.parametrize("method", list(METHODS))
def test_every_episode_meets_the_budget_and_every_evaluation_counts(finished, method):
    run = finished(method)
    episodes, probes = rows(run / "episodes.jsonl"), rows(run / "probes.jsonl")
    assert episodes and all(r["cost_ratio"] <= 0.4 + 1e-9 for r in episodes)
    assert len(episodes) + len(probes) <= EPISODES
    assert sorted(r["evaluation"] for r in episodes + probes) == list(range(1, len(episodes) + len(probes) + 1))
    if method in ("sensitivity", "greedy"):
        assert probes and any(r["cost_ratio"] > 0.4 for r in probes)  # they probe networks off the budget
    if method not in ("uniform", "sensitivity", "greedy"):  # these stop when their procedure ends
        assert len(episodes) + len(probes) == EPISODES  # the others use every evaluation they are given
    strategy = json.loads((run / "strategy.json").read_text())
    pruned = models.load_checkpoint(run / "pruned.pt")
    assert profile(pruned, input_size=(1, 1, 8, 8)).macs == strategy["macs"] <= 0.4 * strategy["base_macs"]
    assert strategy["agent"] == method.split("-")[0]


def kill_when(proc: subprocess.Popen, run_dir: Path, evaluations: int, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once ``evaluations`` evaluations are on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(rows(run_dir / "episodes.jsonl")) + len(rows(run_dir / "probes.jsonl"))
        if done >= evaluations:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# uniform scores one strategy; ddpg (the default) is killed at random points in test_kill_resume.py
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("uniform", "ddpg")])
def test_a_search_killed_mid_way_resumes_to_the_same_episodes(tmp_path, cache, finished, method):
    reference = finished(method)
    killed = tmp_path / "killed"
    args = [*COMMON, *METHODS[method], f"cache_dir={cache}", f"hydra.run.dir={killed}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "amc.search", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kill_when(proc, killed, EPISODES // 2)
    assert not (killed / "pruned.pt").exists(), "the search finished before the kill: the test proves nothing"
    resumed = run_module("amc.search", f"resume={killed}", f"cache_dir={cache}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = ("channels", "accuracy", "reward", "evaluation")
    for name in ("episodes.jsonl", "probes.jsonl"):
        want = [[r[k] for k in keys] for r in rows(reference / name)]
        assert [[r[k] for k in keys] for r in rows(killed / name)] == want, name
    expected = json.loads((reference / "strategy.json").read_text())
    got = json.loads((killed / "strategy.json").read_text())
    assert (got["channels"], got["test_top1"]) == (expected["channels"], expected["test_top1"])


def test_a_method_plugs_in_through_config_alone(tmp_path, cache):
    """A user's method: one module on the path, one config file naming it; no change to amc."""
    code = tmp_path / "code"
    (code / "conf_extra" / "agent").mkdir(parents=True)
    (code / "my_methods.py").write_text(
        "from amc.strategy.methods.base import ReplayedMethod\n"
        "class HalfEverywhere(ReplayedMethod):\n"
        "    def __init__(self, env, agent, seed, workers=None):\n"
        "        super().__init__(env)\n"
        "        self.ratio = agent.options['ratio']\n"
        "    def search(self, evaluator):\n"
        "        evaluator.strategy([self.env.action_of(self.ratio)] * self.env.steps)\n"
    )
    (code / "conf_extra" / "agent" / "half.yaml").write_text(
        "name: half\nrunner: my_methods.HalfEverywhere\nwarmup_episodes: 0\noptions:\n  ratio: 0.3\n"
    )
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run(
        [sys.executable, "-m", "amc.search", *COMMON, "agent=half", f"hydra.searchpath=[file://{code / 'conf_extra'}]",
         f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    episodes = rows(tmp_path / "run" / "episodes.jsonl")
    assert len(episodes) == 1 and episodes[0]["cost_ratio"] <= 0.4 + 1e-9
    assert json.loads((tmp_path / "run" / "strategy.json").read_text())["agent"] == "half"


def test_sensitivity_at_another_budget_reuses_an_earlier_runs_probes(tmp_path, cache, finished):
    """A probe prunes one layer alone, which no budget enters: a search at 0.3 that reuses the 0.4 run's probes
    ends where a fresh search at 0.3 ends, spending evaluations only on its thresholds' strategies."""
    from amc.errors import ConfigError
    from amc.strategy.probe_reuse import check_probes_from
    from tests.conftest import composed

    earlier = finished("sensitivity")
    search_here(tmp_path / "fresh", cache, "sensitivity", "flops_budget=0.3")
    search_here(tmp_path / "reused", cache, "sensitivity", "flops_budget=0.3", f"agent.probes_from={earlier}")
    fresh, reused = (json.loads((tmp_path / d / "strategy.json").read_text()) for d in ("fresh", "reused"))
    assert reused["channels"] == fresh["channels"] and reused["accuracy"] == fresh["accuracy"]
    assert rows(tmp_path / "fresh" / "probes.jsonl") and not rows(tmp_path / "reused" / "probes.jsonl")
    assert len(rows(tmp_path / "reused" / "episodes.jsonl")) == len(rows(tmp_path / "fresh" / "episodes.jsonl"))
    # probes scored with another seed (another calibration sample) are not this search's
    other_seed = composed("search", *COMMON[:-2], "seed=6", *METHODS["sensitivity"], f"agent.probes_from={earlier}")
    with pytest.raises(ConfigError, match=r"scored its probes with other settings: seed=6 \(it ran with 5\)"):
        check_probes_from(other_seed, earlier)


def test_the_multi_fidelity_search_stops_weak_strategies_early(finished):
    """Optuna's pruner stops most strategies at the refit's fidelity; few reach the last rung's distillation."""
    episodes = rows(finished("hyperband") / "episodes.jsonl")
    by_fidelity = {name: sum(r["evaluator"] == name for r in episodes) for name in ("lsq", "lsq+kd4", "lsq+kd12")}
    assert sum(by_fidelity.values()) == EPISODES
    assert by_fidelity["lsq"] > by_fidelity["lsq+kd4"] >= by_fidelity["lsq+kd12"] >= 1, by_fidelity
    strategy = json.loads((finished("hyperband") / "strategy.json").read_text())
    best = next(r for r in episodes if r["episode"] == strategy["episode"])
    assert best["evaluator"] == "lsq+kd12"  # the export picks among the strategies scored at the last rung


def test_a_search_around_uniform_starts_from_it_and_stays_near_it(finished):
    """``agent.options.start=uniform``: the first candidate is the uniform allocation itself, and CMA-ES's later
    ones lie closer to it than the same sampler proposes over the whole space."""
    uniform = rows(finished("uniform") / "episodes.jsonl")[0]["channels"]
    around = rows(finished("optuna-cmaes-uniform") / "episodes.jsonl")
    anywhere = rows(finished("optuna-cmaes") / "episodes.jsonl")
    assert around[0]["channels"] == uniform

    def distance(episodes: list[dict]) -> float:
        """Mean channels moved from the uniform allocation, over the candidates after the first."""
        moved = [sum(abs(a - b) for a, b in zip(r["channels"], uniform, strict=True)) for r in episodes[1:]]
        return sum(moved) / len(moved)

    assert distance(around) < distance(anywhere)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["agent=optuna", "agent.sampler=cmaes", "agent.options.start=best"], "agent.options.start=best: want uniform"),
        (["agent=optuna", "agent.options.radius=0"], "radius=0: want a half-width"),
        (["agent=hyperband", "agent.options.rungs=[0,60,20]"], "rungs must be increasing distillation steps"),
        (["agent=hyperband", "agent.options.rungs=20"], "agent.options.rungs lists distillation steps"),
        (["agent=hyperband", "agent.options.pruner=median"], "unknown agent.options.pruner 'median'"),
        (["agent=hyperband", "agent.options.reduction_factor=1"], "reduction_factor=1: want an integer ≥ 2"),
        (
            ["agent=ddpg", "+agent.options.radius=0.2"],
            "unknown agent.options.radius for agent=ddpg (it has no options)",
        ),
    ],
)
def test_a_bad_setting_of_a_method_is_one_line_before_the_search(tmp_path, cache, options, reason):
    proc = run_module("amc.search", *COMMON, *options, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert proc.returncode == 2 and reason in line and "Traceback" not in proc.stderr
    assert "search (" not in proc.stderr  # refused before the search's progress bar


@pytest.mark.parametrize("method", ["sensitivity", "greedy"])
def test_a_method_that_probes_first_is_refused_below_what_it_needs(tmp_path, cache, finished, method):
    """Fewer evaluations than its probes plus one strategy is one line before anything is scored, never a search
    that spends them all on probes and ends in a traceback; exactly that many scores a strategy."""
    from amc.errors import ConfigError

    run = finished(method)
    points = len(json.loads((run / "strategy.json").read_text())["decision_points"])
    needed = len(rows(run / "probes.jsonl")) + 1 if method == "sensitivity" else points  # greedy: one round
    with pytest.raises(
        ConfigError, match=rf"agent={method} needs at least {needed} evaluations .*episodes={needed - 1}"
    ):
        search_here(tmp_path / "short", cache, method, f"episodes={needed - 1}")
    assert not (tmp_path / "short" / "probes.jsonl").exists()
    search_here(tmp_path / "enough", cache, method, f"episodes={needed}")
    assert rows(tmp_path / "enough" / "episodes.jsonl") and (tmp_path / "enough" / "pruned.pt").is_file()
