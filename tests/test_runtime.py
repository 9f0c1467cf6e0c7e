"""Process-wide settings: triton stays out of CPU-only processes, and nothing breaks where a GPU driver exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import amc, torchvision
from torch.utils._triton import has_triton_package
print(sys.modules.get("triton", "absent") is None, has_triton_package())
"""


def test_triton_is_kept_out_only_without_a_gpu_driver():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    gpu_driver = Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()
    if gpu_driver:
        assert out[0] == "False"  # left alone: torch.compile may want it
    else:
        assert out == ["True", "False"]  # blocked, and torch reads it as not installed


def test_a_search_on_the_seed_models_never_imports_torchvision():
    # torchvision's ops pull in torch._dynamo and sympy (+84 MiB RSS, 1.5 s of start-up), which the
    # MobileNet searches of the first run never use; ResNet-18 imports it when it is built.
    probe = (
        "import sys, amc.search\n"
        "from models import create_model\n"
        "create_model('mobilenet_v1', num_classes=10, in_channels=1, small_input=True)\n"
        "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'sympy') if m in sys.modules))\n"
        "create_model('resnet18', num_classes=10)\n"
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]


def test_eval_precision_auto_is_bfloat16_only_with_hardware_bfloat16(monkeypatch):
    import pytest
    import torch

    from amc import runtime

    cpu = torch.device("cpu")
    assert runtime.eval_dtype("float32", cpu) == torch.float32
    assert runtime.eval_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="eval_precision"):
        runtime.eval_dtype("fp8", cpu)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "avx512bw"})  # bf16 only emulated: slower
    assert runtime.eval_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert runtime.eval_dtype("auto", cpu) == torch.bfloat16
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    monkeypatch.undo()
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert (runtime.eval_dtype("auto", cpu) == torch.bfloat16) == expected


def test_a_search_bounds_the_onednn_kernel_cache_and_its_training_child_does_not(monkeypatch):
    from amc.runtime import ONEDNN_CACHE, SEARCH_PRIMITIVE_CACHE, bound_primitive_cache, unbound_primitive_cache

    monkeypatch.delenv(ONEDNN_CACHE, raising=False)
    bound_primitive_cache()
    assert os.environ[ONEDNN_CACHE] == str(SEARCH_PRIMITIVE_CACHE)
    probe = f"import os; print(os.environ.get('{ONEDNN_CACHE}'))"
    inherited = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert inherited.strip() == str(SEARCH_PRIMITIVE_CACHE)  # scoring workers get it too
    unbound_primitive_cache()  # what the base-training child does first
    assert ONEDNN_CACHE not in os.environ
    monkeypatch.setenv(ONEDNN_CACHE, "4096")  # a user's own choice wins in both
    bound_primitive_cache()
    unbound_primitive_cache()
    assert os.environ[ONEDNN_CACHE] == "4096"
