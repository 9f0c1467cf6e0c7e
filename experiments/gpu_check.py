"""What must work on a GPU, checked in a few minutes: one line per item, OK, FAILED or a note.

  1. a search scoring with two worker processes (workers=2) on the device;
  2. a KD fine-tune of its result in mixed precision (float16 on CUDA, bfloat16 on the CPU);
  3. a 2-process DistributedDataParallel fine-tuning step, where the device has two GPUs (else a note);
  4. the library API on a model that lives on the device: candidates are scored there, the result stays there.

The suite runs it on the CPU (tests/test_experiment_scripts.py), so it cannot rot before a GPU is lent.

    python experiments/gpu_check.py [device=cuda] [out=/tmp/gpu_check]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from script_options import parse_options

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["experiment=smoke", "logger=none", "threads=1"]


def run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def failure(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit {proc.returncode}"


def search_with_workers(device: str, out: Path) -> str:
    proc = run([sys.executable, "-m", "amc.search", *SMOKE, "workers=2", f"device={device}", f"hydra.run.dir={out}"])
    if proc.returncode != 0:
        raise RuntimeError(failure(proc))
    strategy = json.loads((out / "strategy.json").read_text())
    return f"test top-1 {strategy['test_top1']:.2f} % at {strategy['macs_ratio']:.3f} of the MACs (digits)"


def finetune_mixed_precision(device: str, out: Path, searched: Path) -> str:
    precision = "float16" if device.startswith("cuda") else "bfloat16"
    args = [f"checkpoint={searched / 'pruned.pt'}", "data=digits", "logger=none", "train.epochs=1", f"device={device}"]
    proc = run(
        [sys.executable, "-m", "amc.finetune", *args, f"train.mixed_precision={precision}", f"hydra.run.dir={out}"]
    )
    if proc.returncode != 0:
        raise RuntimeError(failure(proc))
    last = json.loads((out / "summary.json").read_text())["last"]
    return f"{precision}: test top-1 {last['test_top1']:.2f} % after 1 epoch of KD"


def ddp_step(device: str, out: Path, searched: Path) -> str:
    import torch

    if not device.startswith("cuda") or torch.cuda.device_count() < 2:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"note: {count} GPU(s) here, and the 2-process step needs two (the suite runs DDP on the CPU, gloo)"
    args = [f"checkpoint={searched / 'pruned.pt'}", "data=digits", "logger=none", "train.epochs=1", "device=cuda"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "amc.finetune"]
    proc = run([*torchrun, *args, f"hydra.run.dir={out}"])
    if proc.returncode != 0:
        raise RuntimeError(failure(proc))
    return (
        "2 processes, nccl: "
        + f"test top-1 {json.loads((out / 'summary.json').read_text())['last']['test_top1']:.2f} %"
    )


def api_on_device(device: str) -> str:
    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT))
    import amc

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).to(device).eval()  # fmt: skip
    images = torch.randn(128, 3, 16, 16, device=device)
    with torch.no_grad():
        wanted = model(images).argmax(1)
    seen = set()

    def agreement(network: nn.Module) -> float:
        seen.add(next(network.parameters()).device.type)
        with torch.no_grad():
            return (network(images).argmax(1) == wanted).float().mean().item()

    result = amc.compress(
        model, images[:1], budget=amc.Budget(flops=0.5), evaluate=agreement, calibration=images, method="random",
        evaluations=4,
    )  # fmt: skip
    where = next(result.model.parameters()).device.type
    if seen != {torch.device(device).type} or where != torch.device(device).type:
        raise RuntimeError(f"candidates scored on {sorted(seen)}, the result on {where}, not on {device}")
    ratio = result.macs / result.base_macs
    return f"compress scored {len(result.history)} candidates on {device}; {ratio:.3f} of the MACs"


def main(argv: list[str]) -> int:
    options = parse_options(
        argv, {"device": str, "out": str}, {"device": "cuda", "out": None},
        "python experiments/gpu_check.py [device=cuda] [out=DIR]",
    )  # fmt: skip
    device = options["device"]
    out = Path(options["out"] or tempfile.mkdtemp(prefix="amc-gpu-check-"))
    import torch

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else device
    print(f"gpu_check on {name}, torch {torch.__version__}", flush=True)
    searched = out / "search"
    items: list[tuple[str, Callable[[], str]]] = [
        ("search workers=2", lambda: search_with_workers(device, searched)),
        ("KD fine-tune, mixed precision", lambda: finetune_mixed_precision(device, out / "finetune", searched)),
        ("DDP step", lambda: ddp_step(device, out / "ddp", searched)),
        ("library API on the device", lambda: api_on_device(device)),
    ]
    failed = 0
    for label, item in items:
        start = time.perf_counter()
        try:
            text = item()
            status = "note" if text.startswith("note:") else "OK"
            text = text.removeprefix("note: ")
        except Exception as exc:  # one line per item, whatever broke
            status, text = "FAILED", " ".join(str(exc).split())[:200]
            failed += 1
        print(f"{status:6} {label}: {text} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
