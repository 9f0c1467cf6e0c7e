"""Timing networks end to end (the whole network, batch by batch, not a sum of layers): what the latency budget,
its table's anchors and the deploy job measure.

PyTorch eager with ``torch.utils.benchmark`` (warm-up, then as many runs as fill ``min_run_s``, median), and
pairs of networks timed by alternating single calls, fastest of each (the search's latency ratios).
"""

from __future__ import annotations

import math
import os
import pickle
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.utils.benchmark as benchmark


def forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Wall time of one forward, the GPU's queue drained before and after (latency tables and probes)."""
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Latency:
    engine: str  # pytorch | onnxruntime
    batch: int
    median_ms: float
    iqr_ms: float
    runs: int
    threads: int


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


@dataclass(frozen=True)
class PairedTiming:
    """A network timed against the base by alternating single calls: the fastest of each, and each pair's ratio."""

    model_ms: float  # the fastest call: the one least disturbed by other load
    base_ms: float
    ratios: tuple[float, ...]  # model over base, call by call: drift of the machine's speed cancels within a pair

    @property
    def median_ratio(self) -> float:
        """The median of the pairs' ratios: the network's latency over the base's."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """The pairs' ratios at the 25th and 75th percentile."""
        q = statistics.quantiles(self.ratios, n=4) if len(self.ratios) > 1 else [self.ratios[0]] * 3
        return q[0], q[2]


def paired_timing(
    model: nn.Module, base: nn.Module, images: torch.Tensor, threads: int, min_run_s: float = 2.0
) -> PairedTiming:
    """``model`` and ``base`` called alternately, one forward at a time, for ``min_run_s``. Alternating single calls
    put both under the same drift of the machine's speed, and the fastest call is the one least disturbed by other
    load (timed in separate blocks, the ratio scattered far more: lab notebook, "Latency budget")."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    ratios = []
    try:
        with torch.inference_mode():
            for _ in range(5):  # warm-up: allocator, oneDNN primitives
                forward_seconds(base, images), forward_seconds(model, images)
            model_s, base_s = math.inf, math.inf
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < min_run_s or calls < 11:
                base_call = forward_seconds(base, images)
                model_call = forward_seconds(model, images)
                base_s, model_s = min(base_s, base_call), min(model_s, model_call)
                ratios.append(model_call / base_call)
                calls += 1
    finally:
        torch.set_num_threads(previous)
    return PairedTiming(1000 * model_s, 1000 * base_s, tuple(ratios))


def paired_latency(
    model: nn.Module, base: nn.Module, images: torch.Tensor, threads: int, min_run_s: float = 2.0
) -> tuple[float, float]:
    """Fastest ms of ``model`` and of ``base``, called alternately one forward at a time (:func:`paired_timing`)."""
    timing = paired_timing(model, base, images, threads, min_run_s)
    return timing.model_ms, timing.base_ms


def paired_latency_ratio(
    model: nn.Module, base: nn.Module, images: torch.Tensor, threads: int, min_run_s: float = 2.0
) -> float:
    """``model``'s latency over ``base``'s (:func:`paired_latency`)."""
    model_ms, base_ms = paired_latency(model.eval(), base.eval(), images, threads, min_run_s)
    return model_ms / base_ms


class LatencyTimer:
    """Times networks against one base network: :class:`IsolatedTimer` or :class:`InProcessTimer` (PyTorch eager),
    or :class:`OnnxRuntimeTimer`."""

    runtime = "pytorch"  # what the latency means: the runtime the networks are timed in

    def timing(self, model: nn.Module, min_run_s: float = 2.0) -> PairedTiming:
        """``model`` timed against the base (:func:`paired_timing`)."""
        raise NotImplementedError

    def latency(self, model: nn.Module, min_run_s: float = 2.0) -> tuple[float, float]:
        """Fastest ms of ``model`` and of the base (:func:`paired_timing`)."""
        timing = self.timing(model, min_run_s)
        return timing.model_ms, timing.base_ms

    def ratio(self, model: nn.Module, min_run_s: float = 2.0) -> float:
        """``model``'s latency over the base's: the median of the interleaved pairs' ratios."""
        return self.timing(model, min_run_s).median_ratio

    def close(self) -> None:
        pass


class IsolatedTimer(LatencyTimer):
    """Times networks against the base in a separate process that does nothing else (:func:`paired_latency`).

    A search process's own allocator state skews batch-1 timings (after thousands of evaluations each small
    forward pays for fresh pages); a fresh process measures what a deployed network sees. The search waits while
    the child times, so the two never share the CPU.
    """

    def __init__(self, base: nn.Module, example: torch.Tensor, threads: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_time_in_child,
            args=(child_end, _on_cpu(base), example.detach().cpu(), threads, str(example.device)),
            name="latency-timer",
            daemon=True,
        )
        self.process.start()
        child_end.close()
        # ready: its imports are done, so they never overlap a timing in this process; it says the oneDNN kernel
        # cache it times with (None: oneDNN's default)
        self.kernel_cache_capacity: str | None = self.connection.recv()["onednn_kernel_cache"]

    def timing(self, model: nn.Module, min_run_s: float = 2.0) -> PairedTiming:
        """``model`` and the base, timed alternately in the child."""
        self.connection.send((_on_cpu(model), min_run_s))
        try:
            return self.connection.recv()
        except EOFError:
            raise RuntimeError("the latency timing process died (out of memory?)") from None

    def close(self) -> None:
        if self.process.is_alive():
            self.connection.send(None)
            self.process.join(timeout=10)
        self.connection.close()


class InProcessTimer(LatencyTimer):
    """Times in this process: for models that cannot be sent to another."""

    def __init__(self, base: nn.Module, example: torch.Tensor, threads: int) -> None:
        self.base, self.example, self.threads = base.eval(), example, threads

    def timing(self, model: nn.Module, min_run_s: float = 2.0) -> PairedTiming:
        return paired_timing(model.eval(), self.base, self.example, self.threads, min_run_s)


class OnnxRuntimeTimer(LatencyTimer):
    """Times networks as onnxruntime runs them (CPU provider, batch 1): each exported to ONNX once, then single runs
    alternated with the base's session. For a budget on the runtime a network is deployed with, where per-call
    overhead is far smaller than PyTorch eager's."""

    runtime = "onnxruntime"

    def __init__(self, base: nn.Module, example: torch.Tensor, threads: int) -> None:
        import tempfile

        self.folder = tempfile.TemporaryDirectory(prefix="amc-onnx-timing-")
        self.example, self.threads, self.exported = example.detach().cpu(), threads, 0
        self.base = self._session(base)

    def _session(self, model: nn.Module):
        from amc.deployment.onnx_export import export_onnx, onnx_session

        self.exported += 1
        path = export_onnx(_on_cpu(model).eval(), self.example, Path(self.folder.name) / f"net{self.exported}.onnx")
        return onnx_session(path, self.threads)

    def timing(self, model: nn.Module, min_run_s: float = 2.0) -> PairedTiming:
        session = self._session(model)
        feed = {self.base.get_inputs()[0].name: self.example.numpy()}

        def call(s) -> float:
            t0 = time.perf_counter()
            s.run(None, feed)
            return time.perf_counter() - t0

        for _ in range(5):  # warm-up
            call(self.base), call(session)
        model_s, base_s, ratios = math.inf, math.inf, []
        start = time.perf_counter()
        while time.perf_counter() - start < min_run_s or len(ratios) < 11:
            base_call, model_call = call(self.base), call(session)
            base_s, model_s = min(base_s, base_call), min(model_s, model_call)
            ratios.append(model_call / base_call)
        return PairedTiming(1000 * model_s, 1000 * base_s, tuple(ratios))

    def close(self) -> None:
        self.folder.cleanup()


def latency_timer(base: nn.Module, example: torch.Tensor, threads: int, runtime: str = "pytorch") -> LatencyTimer:
    """For ``runtime`` onnxruntime an :class:`OnnxRuntimeTimer`; for pytorch an :class:`IsolatedTimer`, or an
    in-process one where the model cannot be pickled (a class defined in ``__main__``, a lambda in its forward)."""
    if runtime == "onnxruntime":
        return OnnxRuntimeTimer(base, example, threads)
    try:
        return IsolatedTimer(base, example, threads)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        warnings.warn(
            f"latency timed inside this process, which skews it: cannot send the model ({error})", stacklevel=2
        )
        return InProcessTimer(base, example, threads)


def _on_cpu(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu().eval() if next(model.parameters(), torch.empty(0)).device.type != "cpu" else model


def _time_in_child(connection, base: nn.Module, example: torch.Tensor, threads: int, device: str) -> None:
    from amc.runtime.onednn_cache import ONEDNN_CACHE, unbound_primitive_cache
    from amc.runtime.process import stop_with_parent

    stop_with_parent()
    # a search bounds oneDNN's kernel cache to about one network's kernels; this process alternates two networks,
    # which then evict each other's kernels on every call (both timed 1.5-2x slow: RESULTS, session 17)
    unbound_primitive_cache()
    base, example = base.to(device).eval(), example.to(device)
    connection.send({"onednn_kernel_cache": os.environ.get(ONEDNN_CACHE)})
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the search ended without saying so
            return
        if message is None:
            return
        model, min_run_s = message
        connection.send(paired_timing(model.to(device).eval(), base, example, threads, min_run_s))
