"""A latency budget met as the machine measures it, whatever the latency model predicted: the fit on a simulated CPU
whose costs differ from the model's (a fixed overhead per layer, a faster matmul)."""

from __future__ import annotations

import pytest
import torch.nn as nn

from amc.pruning.apply import prune_model
from amc.pruning.counting import profile
from amc.strategy.budget import channel_grids
from amc.strategy.latency_fit import WINDOW, fit_to_budget, scaled
from amc.timing import LatencyTimer, PairedTiming
from tests.pruning.test_pruning import randomised


class SimulatedCPU(LatencyTimer):
    """A CPU whose every Conv2d/Linear call costs ``overhead`` ms plus its MACs at ``macs_per_ms``, Linear layers
    ``matmul_speedup`` times faster: nothing like a latency table proportional to MACs."""

    def __init__(self, base: nn.Module, size: tuple[int, ...], overhead: float, macs_per_ms: float, speedup: float):
        self.size, self.overhead, self.rate, self.speedup = size, overhead, macs_per_ms, speedup
        self.base_ms = self.cost(base)
        self.calls = 0

    def cost(self, model: nn.Module) -> float:
        layers = profile(model, self.size).layers
        return sum(self.overhead + r.macs / self.rate / (self.speedup if r.kind == "Linear" else 1) for r in layers)

    def timing(self, model: nn.Module, min_run_s: float = 2.0) -> PairedTiming:
        self.calls += 1
        ms = self.cost(model)
        return PairedTiming(ms, self.base_ms, (ms / self.base_ms,) * 5)


@pytest.mark.parametrize("start", ["over", "far_under"])
def test_the_fit_reaches_the_budget_on_a_cpu_the_model_misprices(start):
    model, size = randomised("mobilenet_v1")
    from amc.pruning.structure import analyse

    structure = analyse(model, size)
    grids = channel_grids(structure, 8, 0.2)
    cpu = SimulatedCPU(model, size, overhead=0.05, macs_per_ms=2e6, speedup=4.0)
    budget = 0.6
    # what a MACs-proportional model would export at 0.6: every layer at ~sqrt(0.6) of its width, which the
    # overheads make measure well over the budget; or a network far under it
    factor = 0.6**0.5 if start == "over" else 0.35
    channels = scaled(structure.widths, grids, factor)
    build = lambda c: prune_model(model, structure, c, reconstruction="none").eval()  # noqa: E731
    before = cpu.cost(build(channels)) / cpu.base_ms
    assert (before > budget) if start == "over" else (before < WINDOW * budget)
    fit = fit_to_budget(channels, grids, budget, cpu, build)
    measured = cpu.cost(build(fit.channels)) / cpu.base_ms
    assert fit.within and WINDOW * budget <= measured <= budget, (before, measured, fit.steps)
    assert fit.timing.median_ratio == pytest.approx(measured)
    assert cpu.calls <= 8
    # the allocation across layers is kept: one common scale, rounded to each point's grid
    ratios = [f / c for f, c in zip(fit.channels, channels, strict=True)]
    assert max(ratios) - min(ratios) < 0.5


def test_an_unreachable_budget_says_so_and_returns_the_smallest_measured():
    model, size = randomised("mobilenet_v1")
    from amc.pruning.structure import analyse

    structure = analyse(model, size)
    grids = channel_grids(structure, 8, 0.2)
    cpu = SimulatedCPU(model, size, overhead=5.0, macs_per_ms=1e9, speedup=1.0)  # overhead is everything
    fit = fit_to_budget(structure.widths, grids, 0.3, cpu, lambda c: prune_model(model, structure, c, "l1", "none"))
    assert not fit.within and fit.channels == [g[0] for g in grids]


def test_a_budget_in_onnxruntime_is_timed_and_fitted_there():
    """latency_runtime=onnxruntime: networks are timed as onnxruntime runs them, and the fit lands in its window."""
    pytest.importorskip("onnxruntime")
    from amc.pruning.structure import analyse
    from amc.timing import latency_timer

    model, size = randomised("mobilenet_v1")
    structure = analyse(model, size)
    grids = channel_grids(structure, 8, 0.2)
    import torch

    timer = latency_timer(model, torch.randn(size), threads=1, runtime="onnxruntime")
    try:
        assert timer.runtime == "onnxruntime"
        build = lambda c: prune_model(model, structure, c, reconstruction="none").eval()  # noqa: E731
        smallest = timer.timing(build([g[0] for g in grids]), 0.2)
        assert smallest.median_ratio < 1 and len(smallest.ratios) >= 11
        budget = (1 + smallest.median_ratio) / 2  # halfway between the smallest network and the base
        fit = fit_to_budget(structure.widths, grids, budget, timer, build, steps=2, timing_s=0.05)
        assert fit.within and fit.timing.median_ratio <= budget
    finally:
        timer.close()
