"""``python -m amc``: the command list, a mistyped command, and a command run through it."""

from __future__ import annotations

import importlib

import pytest

from amc.__main__ import COMMANDS
from tests.conftest import ROOT, run_module


def test_every_listed_command_is_an_entry_point():
    """Each listed command is a module whose ``main`` is a Hydra app on its own config, and every such module is
    listed (the leaderboard report is no Hydra app)."""
    apps = {}
    for path in sorted((ROOT / "amc").glob("*.py")):
        main = getattr(importlib.import_module(f"amc.{path.stem}"), "main", None)
        if getattr(main, "config_name", None) is not None:
            apps[path.stem] = main.config_name
    assert apps == {name: name for name in COMMANDS if name != "leaderboard"}
    assert all((ROOT / "conf" / f"{name}.yaml").is_file() for name in apps)


def test_no_command_lists_them_all():
    proc = run_module("amc")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert listed == list(COMMANDS)


def test_a_mistyped_command_gets_one_line_and_a_suggestion():
    proc = run_module("amc", "serch", "flops_budget=0.5")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: amc has no command 'serch' (did you mean search?); commands: " + ", ".join(COMMANDS)
    ]


@pytest.mark.slow  # three entry-point runs
def test_a_command_runs_as_its_own_module_with_its_overrides():
    via_package = run_module("amc", "profile", "model=mobilenet_v2")
    direct = run_module("amc.profile", "model=mobilenet_v2")
    assert via_package.returncode == 0, via_package.stderr
    assert via_package.stdout == direct.stdout
    assert "MACs" in via_package.stdout
    refused = run_module("amc", "search", "flops_budget=2")  # its own checks and exit code come through
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: flops_budget must be in (0, 1], got 2.0"
