"""Data-parallel training: 2 CPU processes (gloo) under torchrun give what 1 process gives, within noise."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_module

pytestmark = pytest.mark.slow  # end-to-end runs of the entry points

ARGS = [
    "data=digits",
    "logger=none",
    "train.epochs=4",
    "train.lr=0.05",
    "train.batch_size=32",
    "seed=3",
    "+model.kwargs.cfg=[16,[32,2],32]",
    "+model.kwargs.in_planes=8",
]


def test_two_processes_match_one(tmp_path):
    one = run_module("amc.train", *ARGS, f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-2000:]
    # each rank sees half the batches per epoch with the same per-rank batch: the same number of samples per step x2
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
            "train.batch_size=16",
            f"hydra.run.dir={tmp_path / 'two'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    rows_one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows_two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows_two) == 4  # only rank 0 writes
    assert rows_two[-1]["test_top1"] > 50 and abs(rows_two[-1]["test_top1"] - rows_one[-1]["test_top1"]) < 15
