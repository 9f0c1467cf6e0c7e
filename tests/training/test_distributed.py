"""`amc.train` under torchrun: 2 CPU processes (gloo) train one network, and only rank 0 writes. That they take the
steps one process takes is tested exactly, in process: tests/training/test_data_parallel_exact.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # end-to-end runs of the entry points

ARGS = [
    "data=digits",
    "logger=none",
    "train.epochs=4",
    "train.lr=0.05",
    "train.batch_size=16",  # per rank
    "seed=3",
    "+model.kwargs.cfg=[16,[32,2],32]",
    "+model.kwargs.in_planes=8",
]


def test_amc_train_runs_under_torchrun_and_only_rank_0_writes(tmp_path):
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "amc.train",
            *ARGS,
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # one row an epoch: rank 1 wrote none
    assert rows[-1]["test_top1"] > 70  # it learned: 10 digits, 4 epochs; one process reaches about 84 %
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()
