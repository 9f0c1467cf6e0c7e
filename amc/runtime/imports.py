"""What ``import amc`` keeps out of a process: notices and libraries that cannot apply to this machine."""

from __future__ import annotations

import logging
import sys
from types import ModuleType

from amc.runtime.hardware import has_gpu_driver


def quiet_cpp_extension_notice() -> None:
    """torch.utils.benchmark (our latency timings) imports cpp_extension, which warns "No CUDA runtime is found"
    on every CPU-only machine with a CUDA build of torch; amc compiles no extensions."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def skip_triton_without_gpu() -> None:
    """Keep triton out of a process on a machine without a GPU driver: torchvision imports it only to check that
    it is installed, and on a CPU it can run nothing but costs memory. ``import triton`` then raises ImportError,
    which torch reads as "not installed"."""
    if not has_gpu_driver() and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
        # torch's FLOP counter (our MACs check) then warns that it cannot count triton kernels: there are none
        logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)


def import_torch_pruning() -> ModuleType:
    """``torch_pruning``, imported without timm: its op counter (which amc does not use: amc.pruning.counting counts)
    imports timm when installed, and timm imports torchvision, seconds in every process that traces a network.
    A timm imported before stays in use; one imported after works as usual."""
    if "torch_pruning" in sys.modules or "timm" in sys.modules:
        import torch_pruning

        return torch_pruning
    sys.modules["timm"] = None  # type: ignore[assignment]  # ``import timm`` raises ImportError: "not installed"
    try:
        import torch_pruning
    finally:
        del sys.modules["timm"]
    return torch_pruning
