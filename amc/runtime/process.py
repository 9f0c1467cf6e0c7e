"""What a run sets for its whole process: seeds, CPU threads, and a child's end with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import random
import signal
import sys

import numpy as np
import torch

_PR_SET_PDEATHSIG = 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def stop_with_parent() -> None:
    """In a child process: receive SIGTERM when the parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), so that a
    killed search (``timeout``, a scheduler) does not leave its base training running as an orphan."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
