"""Process-wide run settings: seeds, CPU threads and how the process holds memory."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

_PR_SET_PDEATHSIG = 1
ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
_BOUNDED_BY_AMC = "AMC_BOUNDED_ONEDNN_CACHE"
SEARCH_PRIMITIVE_CACHE = 256  # oneDNN's default: 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``) between phases of a run.

    glibc keeps freed activations (blocks under its adaptive mmap threshold, up to 32 MiB) in the heap,
    so what one phase freed (base training, calibration) stays resident through the next. Only at phase
    boundaries: trimmed after every episode, the next one faults its pages back in (measured 0.25 s
    slower per episode on FMNIST-MBV1), and fixing glibc's threshold instead made training 2.3x slower.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def bound_primitive_cache() -> None:
    """Keep fewer compiled oneDNN kernels in a search process (unless the user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``).

    Every scored strategy has new layer shapes, so each episode compiles ~30 new CPU kernels and oneDNN keeps
    up to 1024 of them. Measured on FMNIST-MBV1 (120 strategies, bf16): RSS grew by 290 MiB with the fused
    conv + activation kernels (80 MiB without them) at 1024, and stayed flat at 256, at the same speed. Read
    once, at the first kernel: call before any network runs.
    """
    if ONEDNN_CACHE not in os.environ:
        os.environ[ONEDNN_CACHE] = str(SEARCH_PRIMITIVE_CACHE)
        os.environ[_BOUNDED_BY_AMC] = "1"


def unbound_primitive_cache() -> None:
    """In a child that trains (fixed shapes, forward and backward kernels of every layer): oneDNN's default
    capacity again, unless the user chose one."""
    if os.environ.pop(_BOUNDED_BY_AMC, None):
        os.environ.pop(ONEDNN_CACHE, None)


def stop_with_parent() -> None:
    """In a child process: receive SIGTERM when the parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), so that a
    killed search (``timeout``, a scheduler) does not leave its base training running as an orphan."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def quiet_cpp_extension_notice() -> None:
    """torch.utils.benchmark (our latency timings) imports cpp_extension, which warns "No CUDA runtime is found"
    on every CPU-only machine with a CUDA build of torch; amc compiles no extensions."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def skip_triton_without_gpu() -> None:
    """Keep triton out of a process on a machine without a GPU driver.

    torchvision imports torch._dynamo, which imports triton only to check that it is installed; on a
    CPU-only machine triton can run nothing and costs 73 MiB of RSS (``import torch, torchvision``: 674 vs
    601 MiB). ``import triton`` then raises ImportError, which torch reads as "not installed".
    """
    has_gpu_driver = Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()
    if not has_gpu_driver and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
        # torch's FLOP counter (our MACs check) then warns that it cannot count triton kernels: there are none
        logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)


def forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Wall time of one forward, the GPU's queue drained before and after (latency tables and probes)."""
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


EVAL_PRECISIONS = ("auto", "float32", "bfloat16")


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether this device computes bfloat16 in hardware. Elsewhere oneDNN emulates it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    """The x86 CPU's feature flags (Linux; empty elsewhere): torch has no public query for bf16 instructions."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def eval_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a search scores strategies in: ``auto`` is bfloat16 where the device has it in hardware.

    On this project's 2-core AMD EPYC (AVX512-BF16) a BN-folded, channels_last MobileNet evaluates 2.2x faster
    in bfloat16; experiments/eval_precision_ranking.py measures that the ranking of a search's strategies is kept.
    """
    if precision not in EVAL_PRECISIONS:
        raise ValueError(f"eval_precision must be one of {', '.join(EVAL_PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if has_native_bfloat16(device) else torch.float32
    return getattr(torch, precision)
