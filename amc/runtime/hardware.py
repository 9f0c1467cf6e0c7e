"""What this machine has (a GPU driver, bfloat16 instructions), and so the dtype a search scores strategies in."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from amc.choices import EvalPrecision

EVAL_PRECISIONS = tuple(EvalPrecision)


def has_gpu_driver() -> bool:
    """Whether an NVIDIA or AMD GPU driver is loaded (without initialising CUDA)."""
    return Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether this device computes bfloat16 in hardware. Elsewhere oneDNN emulates it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"}) and not _kernels_capped_below_bfloat16()


def _kernels_capped_below_bfloat16() -> bool:
    """Whether torch's or oneDNN's kernels are held below the CPU's bfloat16 instructions (``ATEN_CPU_CAPABILITY=avx2``,
    ``ONEDNN_MAX_CPU_ISA=AVX2``): they then run as on a CPU without them, where bfloat16 is emulated."""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if capped and capped != "ALL" and "BF16" not in capped and "AMX" not in capped:
        return True
    return torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX", "AVX512_BF16")


def _cpu_flags() -> set[str]:
    """The x86 CPU's feature flags (Linux; empty elsewhere): torch has no public query for bf16 instructions."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def eval_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a search scores strategies in: ``auto`` is bfloat16 where the device has it in hardware (faster
    there, and it keeps the ranking of a search's strategies: experiments/eval_precision_ranking.py)."""
    if precision not in EVAL_PRECISIONS:
        raise ValueError(f"eval_precision must be one of {', '.join(EVAL_PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if has_native_bfloat16(device) else torch.float32
    return getattr(torch, precision)


def cpu_description() -> str:
    """``AMD EPYC ..., AVX512-BF16`` or ``..., no bfloat16 (AVX2)``: what a timing was measured on."""
    import platform

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    return f"{model}, {'AVX512-BF16' if has_native_bfloat16(torch.device('cpu')) else 'no bfloat16 (AVX2)'}"
