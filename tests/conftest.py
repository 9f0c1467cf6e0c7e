"""Shared fixtures: tiny data folders and a composed-config helper for entry-point tests."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker shares the cores with the others: one thread each, in this process and in the entry
    # points it starts (they inherit the environment). Two 2-thread jobs on 2 cores slow each other 10-30x.
    os.environ["OMP_NUM_THREADS"] = "1"

import torch  # after OMP_NUM_THREADS, which torch reads once

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")
BENCHMARK_WEIGHTS = ROOT.parent / "shared" / "benchmarks" / "fmnist_mbv1_base.pth"

os.environ.setdefault("WANDB_MODE", "disabled")
# Runs a test starts without hydra.run.dir go under a temporary folder, never into the checkout's runs/.
os.environ["AMC_RUNS"] = tempfile.mkdtemp(prefix="amc-test-runs-")
torch.set_num_threads(min(2, torch.get_num_threads()))  # 1 under xdist
_CHECKOUT_BEFORE = pytest.StashKey[set]()
# Python's and pytest's own caches, and the environment the suite runs in, are not outputs
_NOT_OUTPUTS = [":(exclude).venv", ":(exclude)**/__pycache__/**", ":(exclude).pytest_cache"]


def checkout_state() -> set[str]:
    """Every untracked, ignored or modified path of the checkout (``git status --porcelain --ignored``, file by
    file); empty outside a git checkout. ``AMC_TESTS_MAY_WRITE`` (pathspecs, space-separated) excludes more: a study
    running beside the suite writes its results into the checkout."""
    extra = [f":(exclude){p}" for p in os.environ.get("AMC_TESTS_MAY_WRITE", "").split()]
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", ".", *_NOT_OUTPUTS, *extra],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    return set(proc.stdout.splitlines()) if proc.returncode == 0 else set()


def pytest_sessionstart(session: pytest.Session) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        session.config.stash[_CHECKOUT_BEFORE] = checkout_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves the checkout as it found it: anything new in ``git status --porcelain --ignored`` fails the
    session (checked once, by the process that collected the tests)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or _CHECKOUT_BEFORE not in session.config.stash:
        return
    left = sorted(checkout_state() - session.config.stash[_CHECKOUT_BEFORE])
    if left:
        shown = ", ".join(line[3:] for line in left[:8]) + (f" and {len(left) - 8} more" if len(left) > 8 else "")
        print(f"\nerror: the tests wrote into the checkout: {shown}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core, at most 4. Each holds torch and its runs' data (up to ~1.5 GiB with the
    entry points it starts), so more would trade memory for little: the suite's longest files bound its wall."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 4))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with the most end-to-end (slow) tests first: xdist hands out whole files in this order, so the long
    ones start at once and the short ones fill the workers' tails (longest first; the order within a file stays)."""
    slow_in_file: dict[Path, int] = {}
    for item in items:
        slow_in_file[item.path] = slow_in_file.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
    position = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (-slow_in_file[item.path], position[id(item)]))


@pytest.fixture(autouse=True)
def _same_random_draws_every_run() -> None:
    """Seed the global generators per test, so a test's draws do not depend on which tests ran before it."""
    from amc.runtime.process import seed_everything

    seed_everything(0)


def run_module(
    module: str, *args: str, timeout: int = 600, pythonpath: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` from the repo root, as a user would (``pythonpath``: a user's code)."""
    env = None
    if pythonpath is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def run_ok(command: str, pythonpath: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m`` + ``command`` (split like a shell line) and assert it succeeded."""
    module, *args = shlex.split(command)
    proc = run_module(module, *args, timeout=timeout, pythonpath=pythonpath)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


def composed(entry: str, *overrides: str) -> Any:
    """The typed settings of ``conf/<entry>.yaml`` with ``overrides``, as the entry point would get them."""
    from hydra import compose, initialize_config_dir

    from amc.config import settings_of

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return settings_of(compose(entry, overrides=list(overrides)))


def refusal(entry: str, *overrides: str, check: Any = None) -> str:
    """The one line a user would read when ``conf/<entry>.yaml`` with ``overrides`` is refused while composing, while
    the settings are made, or by ``check(settings)``; "" when it passes."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from amc.entry import config_error_line
    from amc.errors import AmcError

    try:
        settings = composed(entry, *overrides)
        if check is not None:
            check(settings)
    except AmcError as error:  # what an entry point prints as its one error line (amc.entry.user_errors_exit)
        return str(error)
    except (HydraException, OmegaConfBaseException) as error:
        return config_error_line(error)
    return ""


def assert_clean_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    text = proc.stderr + proc.stdout
    assert proc.returncode != 0, text
    assert "Traceback (most recent call last)" not in text, text
    for fragment in fragments:
        assert fragment in text, text


@pytest.fixture
def food11_root(tmp_path: Path) -> Path:
    """A Food-11-layout folder: 3 images per class and split, some smaller than the 256-px crop."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split in ("training", "validation", "testing"):
        folder = tmp_path / "food-11" / split
        folder.mkdir(parents=True)
        for label in range(11):
            for n in range(3):
                size = (200, 180) if n == 0 else (300, 280)
                pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=gen, dtype=torch.uint8)
                name = f"{label * 3 + n}.jpg" if split == "testing" else f"{label}_{n}.jpg"
                Image.fromarray(pixels.numpy()).save(folder / name)
    return tmp_path / "food-11"
