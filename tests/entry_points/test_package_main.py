"""``python -m amc``: the command list, a mistyped command, and a command run through it."""

from __future__ import annotations

from amc.__main__ import COMMANDS
from tests.conftest import ROOT, run_module


def test_every_listed_command_is_an_entry_point():
    for name in COMMANDS:
        assert name == "leaderboard" or "\n@entry_point(" in (ROOT / "amc" / f"{name}.py").read_text(), name
    entry_points = {p.stem for p in (ROOT / "amc").glob("*.py") if "\n@entry_point(" in p.read_text()}
    assert entry_points == set(COMMANDS) - {"leaderboard"}  # a new entry point is listed too (the report is no app)


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


def test_a_command_runs_as_its_own_module_with_its_overrides():
    via_package = run_module("amc", "profile", "model=mobilenet_v2")
    direct = run_module("amc.profile", "model=mobilenet_v2")
    assert via_package.returncode == 0, via_package.stderr
    assert via_package.stdout == direct.stdout
    assert "MACs" in via_package.stdout
    refused = run_module("amc", "search", "flops_budget=2")  # its own checks and exit code come through
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: flops_budget must be in (0, 1], got 2.0"
