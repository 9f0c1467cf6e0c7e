"""Process-wide settings: triton stays out of CPU-only processes, and nothing breaks where a GPU driver exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_search_on_the_seed_models_never_imports_torchvision_or_timm():
    # torchvision's ops pull in torch._dynamo and sympy (+84 MiB RSS, 1.5 s of start-up), which the
    # MobileNet searches of the first run never use; ResNet-18 imports it when it is built.
    # Tracing goes through torch_pruning, which imports timm (and so torchvision) when timm is installed: amc
    # keeps timm out of that import, and a timm imported afterwards works as usual.
    probe = (
        "import sys, amc.search\n"
        "from amc.models import create_model\n"
        "from amc.pruning.structure import analyse\n"
        "net = create_model('mobilenet_v1', num_classes=10, in_channels=1, small_input=True)\n"
        "analyse(net, (1, 1, 28, 28))\n"
        "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'sympy', 'timm') if m in sys.modules))\n"
        "create_model('resnet18', num_classes=10)\n"
        "print('torchvision' in sys.modules)\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('timm'):\n"
        "    import timm\n"
        "    print(timm.create_model('resnet18', pretrained=False).__class__.__name__)\n"
        "else:\n"
        "    print('ResNet')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:3] == ["[]", "True", "ResNet"]


def test_eval_precision_auto_is_bfloat16_only_with_hardware_bfloat16(monkeypatch):
    import pytest
    import torch

    from amc.runtime import hardware as runtime

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
    from amc.runtime.onednn_cache import (
        ONEDNN_CACHE,
        bound_primitive_cache,
        primitive_cache_capacity,
        unbound_primitive_cache,
    )

    assert primitive_cache_capacity(28) == 64  # FMNIST-MBV1: 27 convs and a classifier
    assert primitive_cache_capacity(121) == 250  # a DenseNet-121: one forward's kernels still fit twice
    assert primitive_cache_capacity(5000) == 1024 and primitive_cache_capacity(None) == 256
    monkeypatch.delenv(ONEDNN_CACHE, raising=False)
    bound_primitive_cache(28)
    assert os.environ[ONEDNN_CACHE] == "64"
    probe = f"import os; print(os.environ.get('{ONEDNN_CACHE}'))"
    inherited = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert inherited.strip() == "64"  # scoring workers get it too
    unbound_primitive_cache()  # what the base-training child does first
    assert ONEDNN_CACHE not in os.environ
    monkeypatch.setenv(ONEDNN_CACHE, "4096")  # a user's own choice wins in both
    bound_primitive_cache(28)
    unbound_primitive_cache()
    assert os.environ[ONEDNN_CACHE] == "4096"


def test_the_search_sizes_the_kernel_cache_from_its_network_without_running_it(tmp_path):
    import torch

    from amc.models import save_checkpoint
    from amc.networks import build_model, count_weighted_layers
    from tests.conftest import composed

    cfg = composed("search", "model=mobilenet_v1_tiny", "data=digits")
    net = build_model(cfg.model, 10, 1, 8)
    layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in net.modules())
    assert layers > 2 and count_weighted_layers(cfg.model, cfg.data, None) == layers
    path = save_checkpoint(net, tmp_path / "base.pt")
    assert count_weighted_layers(cfg.model, cfg.data, str(path)) == layers
    assert count_weighted_layers(cfg.model, cfg.data, str(tmp_path / "missing.pt")) is None  # the checks say why


_RESIDENT_GPU_LIBRARIES = """
import re, torch
from amc.runtime.memory import _GPU_LIBRARY, page_out_gpu_libraries
def resident():
    total, gpu = 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            gpu = len(fields) >= 6 and bool(_GPU_LIBRARY.search(fields[5]))
        elif fields[0] == "Rss:" and gpu:
            total += int(fields[1])
    return total
before = resident()
page_out_gpu_libraries()
after = resident()
x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
# a 3x3 all-ones conv sums each window, so the kernels still run; compared per output, since a total of
# random signs can come near zero, where float rounding breaks a relative tolerance
windows = x.unfold(2, 3, 1).unfold(3, 3, 1).sum(dim=(1, 4, 5))
conv = torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3))
assert torch.allclose(conv, windows.unsqueeze(1).expand_as(conv), atol=1e-5), (conv - windows.unsqueeze(1)).abs().max()
print(before, after)
"""


def test_gpu_libraries_leave_the_resident_set_on_a_machine_without_a_gpu():
    import pytest

    from amc.runtime.hardware import has_gpu_driver

    if not Path("/proc/self/smaps").exists():
        pytest.skip("Linux only")
    out = subprocess.run([sys.executable, "-c", _RESIDENT_GPU_LIBRARIES], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr  # the child's own traceback, not just its exit status
    before, after = (int(v) for v in out.stdout.split())
    if before < 10_000:
        pytest.skip("this torch build loads no GPU libraries")
    if has_gpu_driver():
        assert after == before  # a GPU machine keeps them: they run
    else:
        assert after < 0.2 * before  # only the pages the loader wrote stay; torch still computes (checked inside)


@pytest.mark.parametrize("cap", [{"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}])
def test_scoring_precision_follows_the_kernels_the_cpu_runs(cap):
    """eval_precision=auto: bfloat16 only where the kernels torch and oneDNN run have it in hardware. Held to AVX2
    (as on an AVX2-only CPU), a CPU with AVX512-BF16 scores in float32, as an AVX2-only one does."""
    code = "import torch; from amc.runtime.hardware import eval_dtype; print(eval_dtype('auto', torch.device('cpu')))"
    root = Path(__file__).resolve().parents[1]
    run = lambda env: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    ).stdout.strip()
    assert run({**os.environ, **cap}) == "torch.float32"
    from amc.runtime.hardware import _cpu_flags

    native = run(dict(os.environ))
    assert native == ("torch.bfloat16" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "torch.float32")
