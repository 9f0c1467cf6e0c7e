"""A latency budget met as this machine measures it: the search's best allocation, scaled until it measures just
within the budget.

The search ranks strategies by a latency model (``amc.strategy.latency``); whatever CPU it runs on, the model can
misprice a network by several percent (per-call overhead, kernels that favour some widths). So after the search, the
best strategy's allocation across layers is kept and its overall width is scaled, each step timed end to end against
the base in interleaved pairs, until it measures within ``[WINDOW·budget, budget]``: the network exported is the one
measured, not the one predicted.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch.nn as nn

from amc.timing import LatencyTimer, PairedTiming

log = logging.getLogger(__name__)

WINDOW = 0.95  # a network measured below WINDOW x budget leaves latency unspent
FIT_STEPS = 7  # timings of the bisection at most
FIT_TIMING_S = 3.0  # of alternating calls per timing


@dataclass
class LatencyFit:
    """Where the fit landed: the channels, their timing (median and spread of the pairs' ratios), every step."""

    channels: list[int]
    timing: PairedTiming | None
    within: bool
    steps: list[dict] = field(default_factory=list)


def scaled(channels: Sequence[int], grids: Sequence[Sequence[int]], factor: float) -> list[int]:
    """Each point's count times ``factor``, down to the nearest count its grid allows (its smallest at least)."""
    out = []
    for count, grid in zip(channels, grids, strict=True):
        i = bisect.bisect_right(grid, count * factor + 1e-9) - 1
        out.append(grid[max(i, 0)])
    return out


def fit_to_budget(
    channels: Sequence[int],
    grids: Sequence[Sequence[int]],
    budget: float,
    timer: LatencyTimer,
    build: Callable[[list[int]], nn.Module],
    steps: int = FIT_STEPS,
    timing_s: float = FIT_TIMING_S,
) -> LatencyFit:
    """The largest uniform scaling of ``channels`` that measures within ``budget`` (a ratio to the base), aiming for
    ``[WINDOW·budget, budget]``, by bisection on the scale, each step timed by ``timer``.

    :param build: channels -> the pruned network to time (unreconstructed: latency depends on the channels alone).
    """
    timed: dict[tuple[int, ...], PairedTiming] = {}
    record: list[dict] = []

    def measure(factor: float) -> tuple[list[int], PairedTiming]:
        candidate = scaled(channels, grids, factor)
        return candidate, measure_channels(candidate, factor)

    def measure_channels(candidate: list[int], factor: float | None = None) -> PairedTiming:
        key = tuple(candidate)
        if key not in timed:
            timed[key] = timer.timing(build(candidate), timing_s)
            low, high = timed[key].spread
            record.append({"scale": factor, "channels": candidate, "median": timed[key].median_ratio,
                           "q25": low, "q75": high})  # fmt: skip
        return timed[key]

    widest = max(w[-1] / max(c, 1) for c, w in zip(channels, grids, strict=True))
    low, high = 0.0, widest  # scale 0: every point at its smallest count
    best: tuple[list[int], PairedTiming] | None = None
    over: list[int] | None = None  # the narrowest candidate timed over the budget
    factor = 1.0
    for _ in range(steps):
        candidate, timing = measure(factor)
        if timing.median_ratio <= budget:
            if best is None or timing.median_ratio > best[1].median_ratio:
                best = (candidate, timing)
            if timing.median_ratio >= WINDOW * budget:
                break
            low = factor
        else:
            over = candidate if over is None or sum(candidate) < sum(over) else over
            high = factor
        factor = (low + high) / 2
    if best is None:  # even the narrowest tried measures over: the smallest network the wall allows, as measured
        candidate, timing = measure(0.0)
        return LatencyFit(candidate, timing, timing.median_ratio <= budget, record)
    if best[1].median_ratio < WINDOW * budget and over is not None:
        best = _between(best, over, budget, lambda c: (c, measure_channels(c)), steps)
    return LatencyFit(best[0], best[1], True, record)


def _between(
    within: tuple[list[int], PairedTiming],
    over: list[int],
    budget: float,
    measure: Callable[[list[int]], tuple[list[int], PairedTiming]],
    steps: int,
) -> tuple[list[int], PairedTiming]:
    """Between a network within the budget and the next wider one over it, where the uniform scale's rounding jumps:
    raise the points where they differ one at a time, widest difference first, by bisection on how many."""
    base, _ = within
    differ = sorted(
        (i for i, (a, b) in enumerate(zip(base, over, strict=True)) if b > a), key=lambda i: base[i] - over[i]
    )
    low, high, best = 0, len(differ), within
    for _ in range(steps):
        if high - low <= 1:
            break
        k = (low + high) // 2
        candidate = [over[i] if i in set(differ[:k]) else c for i, c in enumerate(base)]
        _, timing = measure(candidate)
        if timing.median_ratio <= budget:
            best, low = (candidate, timing), k
            if timing.median_ratio >= WINDOW * budget:
                break
        else:
            high = k
    return best
