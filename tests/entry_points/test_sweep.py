"""The wandb sweep spec runs: the command lines ``wandb agent`` would generate, executed offline.

``wandb agent`` substitutes ``${env}`` (the environment), ``${args_no_hyphens}`` (``key=value`` per
parameter) in the spec's ``command``; a grid sweep runs every combination. Each run must report the
metric the spec optimises in its wandb summary.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, refusal

SPEC = ROOT / "experiments" / "sweeps" / "flops_budgets.yaml"


def agent_commands(spec: dict) -> list[list[str]]:
    """What ``wandb agent`` runs for a grid sweep: one command line per combination of parameter values."""
    names = sorted(spec["parameters"])
    grid = itertools.product(*(spec["parameters"][n]["values"] for n in names))
    commands = []
    for values in grid:
        args = [f"{n}={v}" for n, v in zip(names, values, strict=True)]
        line: list[str] = []
        for token in spec["command"]:
            if token == "${env}":
                continue  # the agent's own environment: this process's
            line += args if token == "${args_no_hyphens}" else [sys.executable if token == "python" else token]
        commands.append(line)
    return commands


def covering(commands: list[list[str]]) -> list[list[str]]:
    """The fewest command lines, picked greedily, that between them pass every parameter value."""
    missing = {arg for line in commands for arg in line if "=" in arg}
    picked = []
    while missing:
        line = max(commands, key=lambda c: len(missing & set(c)))
        picked.append(line)
        missing -= set(line)
    return picked


def wandb_summary(run_file: Path) -> dict:
    """The summary an offline wandb run recorded, read from its ``.wandb`` file (a LevelDB-style log of
    protobuf records: 7-byte file header, 32 KiB blocks, 7-byte chunk headers). wandb 0.31 writes no
    wandb-summary.json offline, and its own reader moved into the Go core."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, pending, summary = run_file.read_bytes(), 7, 32768, b"", {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            record = pb.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "summary":
                summary.update({item.key: json.loads(item.value_json) for item in record.summary.update})
    return summary


def test_sweep_spec_is_not_a_hydra_config_group():
    assert not (ROOT / "conf" / "sweep").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "amc.search", "--help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert "sweep:" not in help_text and "model:" in help_text


@pytest.mark.slow
def test_every_command_of_the_grid_runs_and_reports_the_optimised_metric(tmp_path):
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["method"] == "grid"
    commands = agent_commands(spec)
    assert len(commands) == 12
    for line in commands:  # every line the agent would run composes into valid settings
        assert refusal("search", *line[line.index("amc.search") + 1 :], "experiment=smoke") == "", line
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    for i, line in enumerate(covering(commands)):  # and runs every value of every parameter, in 3 of the 12
        run_dir = tmp_path / f"run{i}"
        extra = ["experiment=smoke", "logger=wandb", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"]
        proc = subprocess.run(line + extra, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
        (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        summary = wandb_summary(run_file)
        assert isinstance(summary[spec["metric"]["name"]], float), line
        params = dict(arg.split("=", 1) for arg in line[line.index("amc.search") + 1 :])
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert {k: str(saved[k]) for k in params} == params, line  # the run used the sweep's values
