"""Models leave PyTorch: ONNX export, checked against PyTorch with onnxruntime and timed there."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from amc.errors import ConfigError
from amc.timing import Latency


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
