"""The layering of docs/architecture.md, enforced by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT = [str(Path(sys.executable).parent / "lint-imports")]  # import-linter's command, beside this Python


def lint(root: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [*LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        capture_output=True, text=True, cwd=root, env=env, timeout=300,
    )  # fmt: skip


def test_the_contracts_hold():
    proc = lint(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout


def test_a_planted_upward_import_breaks_them(tmp_path):
    """A copy of the package whose pruning engine imports an entry point: the contracts must catch it."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copytree(ROOT / "amc", copy / "amc", symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    planted = copy / "amc" / "pruning" / "counting.py"
    planted.write_text(planted.read_text() + "\nimport amc.search  # planted: the engine reaching up to a door\n")
    proc = lint(copy, copy)
    assert proc.returncode != 0
    assert "amc.pruning.counting -> amc.search" in proc.stdout, proc.stdout[-3000:]
