"""Process-wide settings: triton stays out of CPU-only processes, and nothing breaks where a GPU driver exists."""

from __future__ import annotations

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
