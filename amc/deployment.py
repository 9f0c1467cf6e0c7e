"""Models leave PyTorch: ONNX export checked against PyTorch with onnxruntime, and measured latency.

Latency is end to end (the whole network, not a sum of layers): PyTorch eager with
``torch.utils.benchmark`` (warm-up, then as many runs as fill ``min_run_s``, median), and onnxruntime
timed the same way, both with ``threads`` intra-op threads.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.utils.benchmark as benchmark

from amc.errors import ConfigError
from amc.io import write_json_atomic
from amc.networks import first_conv_in_channels, load_model_for_data
from amc.pruning.cost import profile
from amc.runtime import set_threads
from amc.settings import DeployConfig
from models import load_checkpoint


@dataclass(frozen=True)
class Latency:
    engine: str  # pytorch | onnxruntime
    batch: int
    median_ms: float
    iqr_ms: float
    runs: int
    threads: int


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``model`` as ONNX with a dynamic batch dimension (torch.export-based exporter).

    The exporter names the weights file after the model file and records that name inside it, so it writes
    into a scratch folder under the final names; the files are moved into place only once complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ("onnxscript", "onnx_ir"):  # their optimiser logs every pass at INFO, which Hydra shows
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        staged = Path(scratch) / path.name
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each of its steps
            torch.onnx.export(
                model.eval(),
                (example,),
                str(staged),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                input_names=["images"],
                output_names=["logits"],
            )
        for extra in Path(scratch).iterdir():  # external weights (if any) first: the model file refers to them
            if extra != staged:
                os.replace(extra, path.parent / extra.name)
        os.replace(staged, path)
    return path


def onnx_session(path: str | os.PathLike, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("ONNX needs onnxruntime: pip install 'amc[deploy]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_difference(session, model: nn.Module, images: torch.Tensor) -> float:
    """Largest |onnxruntime − PyTorch| over the logits of ``images``."""
    with torch.inference_mode():
        expected = model.eval()(images).numpy()
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    return float(abs(got - expected).max())


def torch_latency(model: nn.Module, images: torch.Tensor, threads: int, min_run_s: float = 1.0) -> Latency:
    model = model.eval()
    timer = benchmark.Timer(
        stmt="with torch.inference_mode(): model(x)",
        globals={"model": model, "x": images, "torch": torch},
        num_threads=threads,
    )
    timer.timeit(3)  # warm-up
    m = timer.blocked_autorange(min_run_time=min_run_s)
    return Latency("pytorch", len(images), 1000 * m.median, 1000 * m.iqr, len(m.times), threads)


def _forward_s(model: nn.Module, images: torch.Tensor) -> float:
    if images.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(images)
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def paired_latency(
    model: nn.Module, base: nn.Module, images: torch.Tensor, threads: int, min_run_s: float = 2.0
) -> tuple[float, float]:
    """Median ms of ``model`` and of ``base``, called alternately one forward at a time for ``min_run_s``.

    Alternating single calls put both under the same drift of the machine's speed, so their ratio holds still
    where separate timings do not: one batch-1 network on this 2-core VM measured 0.59-0.94 of the base from
    blocks of 0.15 s per model (``torch.utils.benchmark``, 7 rounds), and 0.688-0.696 over six 2-s runs
    alternating calls.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(5):  # warm-up: allocator, oneDNN primitives
                _forward_s(base, images), _forward_s(model, images)
            model_s: list[float] = []
            base_s: list[float] = []
            start = time.perf_counter()
            while time.perf_counter() - start < min_run_s or len(model_s) < 11:
                base_s.append(_forward_s(base, images))
                model_s.append(_forward_s(model, images))
    finally:
        torch.set_num_threads(previous)
    return 1000 * statistics.median(model_s), 1000 * statistics.median(base_s)


def paired_latency_ratio(
    model: nn.Module, base: nn.Module, images: torch.Tensor, threads: int, min_run_s: float = 2.0
) -> float:
    """``model``'s latency over ``base``'s (:func:`paired_latency`)."""
    model_ms, base_ms = paired_latency(model.eval(), base.eval(), images, threads, min_run_s)
    return model_ms / base_ms


def onnx_latency(session, images: torch.Tensor, threads: int, min_run_s: float = 1.0) -> Latency:
    feed = {session.get_inputs()[0].name: images.numpy()}
    for _ in range(3):  # warm-up
        session.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_run_s or len(times) < 5:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=4)
    return Latency(
        "onnxruntime", len(images), 1000 * statistics.median(times), 1000 * (q[2] - q[0]), len(times), threads
    )


# ---------------------------------------------------------------- the deploy job (amc.deploy)
def measure(
    model: nn.Module,
    onnx_path: Path,
    size: int,
    batch_sizes: Sequence[int] = (1, 256),
    threads: int = 2,
    min_run_s: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """ONNX export of ``model``, its agreement with PyTorch, MACs and latency at each batch size."""
    channels = first_conv_in_channels(model)
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(max(batch_sizes), channels, size, size, generator=generator)
    export_onnx(model, example[:1], onnx_path)
    session = onnx_session(onnx_path, threads)
    rows = []
    for batch in batch_sizes:
        x = example[:batch].contiguous()
        rows.append(asdict(torch_latency(model, x, threads, min_run_s)))
        rows.append(asdict(onnx_latency(session, x, threads, min_run_s)))
    return {
        "onnx": str(onnx_path),
        "macs": profile(model, (1, channels, size, size)).macs,
        "max_abs_diff": max_difference(session, model, example[: min(32, len(example))]),
        "latency": rows,
    }


def deploy_report(cfg: DeployConfig, run_dir: Path) -> dict[str, Any]:
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (a model to deploy, e.g. a search's pruned.pt) is required")
    if not cfg.batch_sizes:  # each size and threads are range-checked with the settings (amc.settings)
        raise ConfigError("batch_sizes must list at least one batch size, e.g. [1,256]")
    set_threads(cfg.threads)
    threads = torch.get_num_threads()  # threads=null: torch's default, stated in the summary
    model = load_checkpoint(cfg.checkpoint).eval()
    size = int(cfg.image_size or model.checkpoint_metadata.get("image_size", 224))
    base_path = cfg.base if cfg.base is not None else model.checkpoint_metadata.get("base_checkpoint")
    summary: dict[str, Any] = {"checkpoint": str(cfg.checkpoint), "image_size": size, "threads": threads}
    how = (cfg.batch_sizes, threads, cfg.min_run_s, cfg.seed)
    summary["model"] = measure(model, run_dir / "model.onnx", size, *how)
    if base_path:
        base = load_model_for_data(str(base_path), cfg.model, cfg.data).eval()
        summary["base"] = measure(base, run_dir / "base.onnx", size, *how)
        summary["ratios"] = ratios(summary["model"], summary["base"])
    write_json_atomic(run_dir / "deploy_summary.json", summary)
    print_summary(summary)
    return summary


def ratios(model: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    out = {"macs": model["macs"] / base["macs"]}
    for m, b in zip(model["latency"], base["latency"], strict=True):
        out[f"latency_{m['engine']}_batch{m['batch']}"] = m["median_ms"] / b["median_ms"]
    return out


def print_summary(s: dict[str, Any]) -> None:
    for label in ("model", "base"):
        if label not in s:
            continue
        r = s[label]
        print(
            f"{label}: {r['onnx']}, MACs {r['macs']:,} per image (FLOPs = 2 x MACs), max |ONNX - PyTorch| "
            f"{r['max_abs_diff']:.2e}"
        )
        for row in r["latency"]:
            print(
                f"  {row['engine']:<12} batch {row['batch']:>4}: {row['median_ms']:.3f} ms median "
                f"(IQR {row['iqr_ms']:.3f}, {row['runs']} runs, {row['threads']} threads)"
            )
    if "ratios" in s:
        print("pruned / base: " + ", ".join(f"{k} {v:.3f}" for k, v in s["ratios"].items()))
