"""kill -9 at random points: every search resumes to the uninterrupted run's result, no file half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_module

ARGS = ["experiment=smoke", "seed=11", "episodes=12", "agent.warmup_episodes=4"]


def start(run_dir, cache, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "amc.search", *ARGS, f"cache_dir={cache}", f"hydra.run.dir={run_dir}", *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )


@pytest.mark.slow
def test_searches_killed_at_random_points_resume_to_the_same_best(tmp_path):
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    reference = run_module("amc.search", *ARGS, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'ref'}")
    assert reference.returncode == 0, reference.stderr[-2000:]
    wall = time.perf_counter() - t0
    expected = json.loads((tmp_path / "ref" / "strategy.json").read_text())
    rng = random.Random(0)
    for trial in range(3):
        run_dir = tmp_path / f"killed{trial}"
        proc = start(run_dir, cache)
        time.sleep(rng.uniform(1.0, wall))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for _ in range(3):  # resume (a kill may have come before anything was written: then start over)
            if (run_dir / "pruned.pt").is_file():  # written last, once the search is complete
                break
            extra = [f"resume={run_dir}"] if (run_dir / "config.yaml").is_file() else []
            resumed = run_module(
                "amc.search", *([] if extra else ARGS), f"cache_dir={cache}", f"hydra.run.dir={run_dir}", *extra
            )
            assert resumed.returncode == 0, resumed.stderr[-2000:]
        got = json.loads((run_dir / "strategy.json").read_text())
        for key in ("channels", "accuracy", "episode", "macs"):
            assert got[key] == expected[key], (trial, key)
        rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
        assert [r["episode"] for r in rows] == list(range(1, 13)), trial
        assert not list(run_dir.glob("*.tmp")), trial
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", *[f"killed{i}" for i in range(3)], "ref"]


def _tiny_env():
    from amc.envs import ChannelPruningEnv
    from amc.strategy.tiny import tiny_task

    return ChannelPruningEnv(*tiny_task())


class _KeepAll:
    def episode_done(self, result) -> bool:
        return True

    def checkpoint(self) -> None:
        pass

    def wants_more(self) -> bool:
        return True


def test_a_scoring_worker_that_dies_is_a_clean_error_not_an_eof_traceback():
    """workers=N: a worker killed (OOM killer, a user) surfaces as an AmcError the entry point prints in one line."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from amc.errors import AmcError
    from amc.strategy.methods.rl import RLRunner, WorkerDied
    from tests.conftest import composed

    workers = SubprocVecEnv([_tiny_env, _tiny_env], start_method="spawn")
    runner = RLRunner(_tiny_env(), composed("search", "experiment=smoke").agent, 0, workers)
    workers.processes[0].kill()
    workers.processes[0].join()
    with pytest.raises(WorkerDied, match="a scoring worker process died") as caught:
        runner.run(4, _KeepAll())
    assert isinstance(caught.value, AmcError)
