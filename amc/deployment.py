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
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.utils.benchmark as benchmark

from amc.errors import ConfigError


@dataclass(frozen=True)
class Latency:
    engine: str  # pytorch | onnxruntime
    batch: int
    median_ms: float
    iqr_ms: float
    runs: int
    threads: int


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``model`` as ONNX with a dynamic batch dimension (torch.export-based exporter)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    for name in ("onnxscript", "onnx_ir"):  # their optimiser logs every pass at INFO, which Hydra shows
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each of its steps
        torch.onnx.export(
            model.eval(),
            (example,),
            str(tmp),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            input_names=["images"],
            output_names=["logits"],
        )
    os.replace(tmp, path)
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
