"""Process-wide run settings: seeds, CPU threads and how the process holds memory."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

_PR_SET_PDEATHSIG = 1
ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
_BOUNDED_BY_AMC = "AMC_BOUNDED_ONEDNN_CACHE"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``) between phases of a run, and, on a
    machine without a GPU, the pages of the GPU libraries that torch loaded (``page_out_gpu_libraries``).

    glibc keeps freed activations (blocks under its adaptive mmap threshold, up to 32 MiB) in the heap,
    so what one phase freed (base training, calibration) stays resident through the next. Only at phase
    boundaries: trimmed after every episode, the next one faults its pages back in (measured 0.25 s
    slower per episode on FMNIST-MBV1), and fixing glibc's threshold instead made training 2.3x slower.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    page_out_gpu_libraries()


_MADV_DONTNEED, _MADV_PAGEOUT = 4, 21  # PAGEOUT: Linux 5.4+
# The libraries of torch's CUDA build: its own, and those of the nvidia-* and cuda-* wheels it loads.
_GPU_LIBRARY = re.compile(r"/(nvidia|cuda|cusparselt)[^/]*/.*\.so|/libtorch_cuda[^/]*\.so|/libc10_cuda\.so")


def page_out_gpu_libraries() -> None:
    """On a machine without a GPU driver: drop from this process's resident set the pages of the GPU libraries
    that ``import torch`` loaded (a CUDA build loads them whatever the machine).

    Measured on a 2-core CPU machine (torch 2.14.1+cu130): a search process holds 278 MiB of clean, file-backed
    pages of cuBLASLt, NVRTC, nvJitLink and others that nothing on a CPU reads again. A read-only mapping
    that nothing wrote is dropped (``MADV_DONTNEED``: a page read again comes back from the file, the same
    bytes); any other is only advised out (``MADV_PAGEOUT``: what was written stays). No state is lost.
    """
    if not sys.platform.startswith("linux") or has_gpu_driver():
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        mappings = _gpu_library_mappings(Path("/proc/self/smaps").read_text())
    except OSError:
        return
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start, end, untouched in mappings:
        libc.madvise(start, end - start, _MADV_DONTNEED if untouched else _MADV_PAGEOUT)


def _gpu_library_mappings(smaps: str) -> list[tuple[int, int, bool]]:
    """(start, end, read-only and never written) of every mapping of a GPU library in ``/proc/self/smaps``."""
    found: list[tuple[int, int, bool]] = []
    current: tuple[int, int, bool] | None = None  # the GPU-library mapping whose fields are being read
    for line in smaps.splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":") and "-" in fields[0]:  # header: range perms offset dev inode path
            if current:
                found.append(current)
            current = None
            if len(fields) >= 6 and _GPU_LIBRARY.search(fields[5]):
                start, end = (int(a, 16) for a in fields[0].split("-"))
                current = (start, end, "w" not in fields[1])
        elif current and fields[:1] in (["Private_Dirty:"], ["Anonymous:"]) and int(fields[1]) > 0:
            current = (current[0], current[1], False)
    if current:
        found.append(current)
    return found


def primitive_cache_capacity(layers: int | None) -> int:
    """How many compiled oneDNN kernels a search process keeps, for a network of ``layers`` conv and linear layers.

    Every scored strategy has new layer shapes, so each one compiles its own kernels, and a kept kernel's memory
    pins the heap between the activations: the heap then holds freed space it cannot give back. Measured on
    FMNIST-MBV1 (28 layers, 40 strategies, float32, 2-core AVX2 CPU): RSS 1.25 GB at 256 kernels, 1.17 at 128,
    0.92 at 64, at the same speed; at 32 the kernels of one forward no longer fit and evaluation is 28 % slower.
    So: room for one forward's kernels twice over, never under 64 (``None``, not known: 256).
    """
    if not layers:
        return 256
    return max(64, min(1024, 2 * layers + 8))


def bound_primitive_cache(layers: int | None = None) -> None:
    """Keep few compiled oneDNN kernels in a search process (unless the user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``);
    see ``primitive_cache_capacity``. oneDNN reads it once, at the first kernel: call before any network runs.

    With oneDNN's default of 1024, FMNIST-MBV1 grew by 290 MiB over 120 strategies (bf16, fused conv + activation).
    """
    if ONEDNN_CACHE not in os.environ:
        os.environ[ONEDNN_CACHE] = str(primitive_cache_capacity(layers))
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


def has_gpu_driver() -> bool:
    """Whether an NVIDIA or AMD GPU driver is loaded (without initialising CUDA)."""
    return Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()


def skip_triton_without_gpu() -> None:
    """Keep triton out of a process on a machine without a GPU driver.

    torchvision imports torch._dynamo, which imports triton only to check that it is installed; on a
    CPU-only machine triton can run nothing and costs 73 MiB of RSS (``import torch, torchvision``: 674 vs
    601 MiB). ``import triton`` then raises ImportError, which torch reads as "not installed".
    """
    if not has_gpu_driver() and "triton" not in sys.modules:
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
