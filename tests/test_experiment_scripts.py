"""The scripts in experiments/ refuse a bad argument in one ``error:`` line, exit code 2, before any work starts."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))


@pytest.mark.parametrize(
    ("script", "argv", "reason"),
    [
        ("search_study", ["only=foo"], "only=foo: want one of all, study, leaderboard"),
        ("search_study", ["bogus"], "unknown argument 'bogus'; usage: python experiments/search_study.py"),
        ("search_study", ["jobs=0"], "jobs=0: must be ≥ 1"),
        ("predictiveness", ["budgets=0.25,2"], "budgets=0.25,2: want fractions in (0, 1]"),
        ("predictiveness", ["strategies=x"], "strategies=x: invalid literal for int()"),
        ("predictiveness", ["epochs=-1"], "epochs=-1: must be > 0"),
        ("predictiveness", ["retest=0"], "retest=0: must be ≥ 1"),
        ("latency_prediction", ["strategies=0"], "strategies=0: must be ≥ 1"),
        ("evaluator_seconds", ["budgets=0.3"], "budgets=0.3: the predictiveness study has no sample there yet"),
        ("equal_cpu_study", ["cpu=0"], "cpu=0: must be > 0"),
        ("equal_cpu_study", ["budgets=0.1", "methods=ddpg_lsq+kd20"], "methods=ddpg_lsq+kd20: not run at flops 0.1"),
        ("equal_cpu_study", ["methods=ddpg,bogus"], "methods=ddpg,bogus: unknown method bogus; the study's: cmaes_"),
        ("reward_scale", ["seeds=0"], "seeds=0: must be ≥ 1"),
        ("headroom", ["budgets=0.3"], "budgets=0.3: the predictiveness study has fine-tuned nothing there with clip=2"),
        ("equal_cpu_study", ["seeds=2018,x"], "seeds=2018,x: invalid literal for int()"),
        ("latency_interference", ["seconds=0"], "seconds=0: must be > 0"),
        ("bn_folding_speed", ["threads=two"], "threads=two: invalid literal for int()"),
    ],
)
def test_a_bad_argument_is_one_line_before_any_work(script, argv, reason, capsys, monkeypatch):
    sys.dont_write_bytecode, before = True, sys.dont_write_bytecode  # no __pycache__ left under experiments/
    try:
        module = importlib.import_module(script)
    finally:
        sys.dont_write_bytecode = before
    started = []
    starts = ("run", "study_budget", "ensure_base", "settings", "models", "time_budget", "search")
    for name in starts:  # whatever the script starts with
        if hasattr(module, name):
            monkeypatch.setattr(module, name, lambda *a, **k: started.append(a))
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2 and not started
    err = capsys.readouterr().err
    assert err.startswith(f"error: {reason}") and err.count("\n") == 1


@pytest.mark.slow
def test_the_gpu_check_runs_on_the_cpu(tmp_path):
    """experiments/gpu_check.py, with the device a parameter: it cannot rot before a GPU is lent."""
    import os
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_check.py"), "device=cpu", f"out={tmp_path}"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert [line.split()[0] for line in lines[1:]] == ["OK", "OK", "note", "OK"], proc.stdout
