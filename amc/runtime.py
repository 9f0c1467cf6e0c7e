"""Process-wide run settings: seeds, CPU threads and how the process holds memory."""

from __future__ import annotations

import contextlib
import ctypes
import random
import sys
from pathlib import Path

import numpy as np
import torch

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_LARGE_ALLOCATION = 1 << 20


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def return_freed_memory() -> None:
    """Serve allocations of 1 MiB and more from their own pages, so a freed activation goes back to the OS.

    glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), after which freed
    activations stay in the heap and peak RSS creeps up with fragmentation. A fixed threshold
    measured 380 MiB less peak RSS on the FMNIST-MBV1 search (1.34 vs 1.72 GiB).
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _LARGE_ALLOCATION)


def skip_triton_without_gpu() -> None:
    """Keep triton out of a process on a machine without a GPU driver.

    torchvision imports torch._dynamo, which imports triton only to check that it is installed; on a
    CPU-only machine triton can run nothing and costs 126 MiB of RSS. ``import triton`` then raises
    ImportError, which torch reads as "not installed".
    """
    has_gpu_driver = Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()
    if not has_gpu_driver and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
