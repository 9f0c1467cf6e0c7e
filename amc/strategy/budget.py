"""Budgets and the action wall: channel choices that provably meet a MACs / params / latency budget.

A constraint maps a channel list to a cost that is monotone in every entry. The wall caps each
decision so that, even if every later decision went to its lower bound, the budget can still be
met; an infeasible budget is an error up front, never silently exceeded. Channel counts are
multiples of ``channel_round`` (or the full width), rounded to the nearest allowed count and then
capped — never rounded up past the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from amc.errors import ConfigError
from amc.pruning.structure import PrunableStructure
from amc.settings import budget_error

CostFn = Callable[[Sequence[int]], float]
TOLERANCE = 1e-9  # float slack in every "fits" and "at most" comparison (costs and ratios are exact otherwise)
CLOSE_ENOUGH = 0.01  # a filled strategy this close under its budget is not traded further


def largest_at_most(allowed: Sequence[int], bound: float) -> int:
    """The largest allowed count ≤ ``bound`` (the smallest allowed one when none is)."""
    fitting = [c for c in allowed if c <= bound + TOLERANCE]
    return fitting[-1] if fitting else allowed[0]


def allowed_counts(width: int, multiple: int, lower_bound: float) -> list[int]:
    """Counts a decision point may take: multiples of ``multiple`` at or above the lower bound, and the width."""
    multiple = max(1, int(multiple))
    smallest = max(1, math.ceil(lower_bound * width - TOLERANCE))
    counts = [c for c in range(multiple, width + 1, multiple) if c >= smallest]
    if not counts or counts[0] > smallest:  # the lower bound itself, rounded up to the grid
        first = min(width, math.ceil(smallest / multiple) * multiple)
        counts = sorted({first, *counts})
    if counts[-1] != width:
        counts.append(width)
    return counts


def channel_grids(structure: PrunableStructure, channel_round: int, lower_bound: float) -> list[list[int]]:
    """Every decision point's allowed counts (``allowed_counts``): the wall's grid, and the latency table's."""
    return [allowed_counts(w, channel_round, lower_bound) for w in structure.widths]


@dataclass
class Constraint:
    kind: str  # flops | params | latency
    budget: float  # fraction of the base network's cost, in (0, 1]
    cost: CostFn
    base_cost: float
    unit: str

    @property
    def limit(self) -> float:
        return self.budget * self.base_cost

    def fits(self, channels: Sequence[int]) -> bool:
        return self.cost(channels) <= self.limit + TOLERANCE


def make_constraint(
    kind: str, budget: float, structure: PrunableStructure, latency_fn: CostFn | None = None
) -> Constraint:
    error = budget_error(f"{kind}_budget", budget)
    if error:
        raise ConfigError(error)
    widths = structure.widths
    if kind == "flops":
        return Constraint(kind, budget, structure.macs, structure.macs(widths), "MACs")
    if kind == "params":
        return Constraint(kind, budget, structure.params, structure.params(widths), "params")
    if kind == "latency":
        if latency_fn is None:
            raise ConfigError("a latency budget needs a latency table")
        return Constraint(kind, budget, latency_fn, latency_fn(widths), "ms")
    raise ConfigError(f"unknown constraint {kind!r}; use flops, params or latency")


class ActionWall:
    """Turns desired keep ratios into channel counts that always meet ``constraint``."""

    def __init__(
        self, structure: PrunableStructure, constraint: Constraint, lower_bound: float = 0.2, channel_round: int = 8
    ) -> None:
        if not 0 < lower_bound <= 1:
            raise ConfigError(f"lower_bound must be in (0, 1], got {lower_bound}")
        self.structure, self.constraint = structure, constraint
        self.allowed = channel_grids(structure, channel_round, lower_bound)
        self.minimum = [a[0] for a in self.allowed]
        floor = constraint.cost(self.minimum)
        if floor > constraint.limit + TOLERANCE:
            raise ConfigError(
                f"infeasible {constraint.kind} budget {constraint.budget:g}: with every layer at the lower bound "
                f"{lower_bound:g} (channels rounded to {channel_round}) the network keeps "
                f"{floor / constraint.base_cost:.4f} of the base {constraint.unit}; "
                "raise the budget or lower lower_bound"
            )

    def cap(self, decided: Sequence[int], index: int) -> int:
        """The largest allowed count at ``index`` that still lets the budget be met."""
        rest = self.minimum[index + 1 :]
        best = self.minimum[index]
        for count in self.allowed[index]:  # cost is monotone: stop at the first that overshoots
            if not self.constraint.fits([*decided, count, *rest]):
                break
            best = count
        return best

    def choose(self, decided: Sequence[int], index: int, keep_ratio: float) -> int:
        """Nearest allowed count to ``keep_ratio × width``, capped by the wall."""
        width = self.structure.widths[index]
        wanted = min(self.allowed[index], key=lambda c: (abs(c - keep_ratio * width), c))
        return min(wanted, self.cap(decided, index))

    def scale_to_budget(self, channels: Sequence[int]) -> list[int]:
        """Grow every layer by one common factor (on the channel grid) until the budget is used.

        This keeps the agent's *allocation* of the budget across layers — which is what it learns —
        while making every strategy spend the budget; ``fill`` then spends what the grid leaves.
        """
        ratios = [c / w for c, w in zip(channels, self.structure.widths, strict=True)]

        def scaled(factor: float) -> list[int]:
            pairs = zip(self.allowed, self.structure.widths, ratios, strict=True)
            return [largest_at_most(allowed, factor * r * width) for allowed, width, r in pairs]

        lo, hi = 1.0, 1.0 / min(ratios)
        if self.constraint.fits(scaled(hi)):
            return scaled(hi)
        for _ in range(30):
            mid = (lo + hi) / 2
            if self.constraint.fits(scaled(mid)):
                lo = mid
            else:
                hi = mid
        return scaled(lo)

    def fill(self, channels: Sequence[int]) -> list[int]:
        """Spend budget left over by rounding: grow the most-pruned layers one grid step while it fits.

        On a coarse grid (a narrow network) one more step of any layer can cost more than is left, leaving the
        strategy over 1 % under budget; then a layer is lowered (by any number of steps), traded for steps up in
        the others, and the trade that lands closest to the budget is kept, while one helps.
        """
        channels = self._grow(list(channels))
        for _ in range(len(channels)):
            if self.constraint.cost(channels) >= (1 - CLOSE_ENOUGH) * self.constraint.limit:
                break
            best, best_cost = channels, self.constraint.cost(channels)
            for i, c in enumerate(channels):
                for lower in self.allowed[i][: self.allowed[i].index(c)]:
                    trial = self._grow([*channels[:i], lower, *channels[i + 1 :]], frozen=i)
                    if (cost := self.constraint.cost(trial)) > best_cost:
                        best, best_cost = trial, cost
            if best is channels:
                break
            channels = best
        return channels

    def _grow(self, channels: list[int], frozen: int | None = None) -> list[int]:
        """Grow the most-pruned layers (all but ``frozen``) one grid step at a time while the budget allows."""
        while True:
            best = None
            for i, c in enumerate(channels):
                pos = self.allowed[i].index(c)
                if i == frozen or pos + 1 == len(self.allowed[i]):
                    continue
                trial = [*channels[:i], self.allowed[i][pos + 1], *channels[i + 1 :]]
                if self.constraint.fits(trial):
                    ratio = c / self.structure.widths[i]
                    if best is None or ratio < best[0]:
                        best = (ratio, i, trial)
            if best is None:
                return channels
            channels = best[2]

    def uniform(self) -> list[int]:
        """The largest single keep ratio whose rounded channels meet the budget (the uniform baseline)."""
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.constraint.fits(self.uniform_channels(mid)):
                lo = mid
            else:
                hi = mid
        return self.uniform_channels(lo)

    def uniform_channels(self, ratio: float) -> list[int]:
        pairs = zip(self.allowed, self.structure.widths, strict=True)
        return [largest_at_most(allowed, ratio * width) for allowed, width in pairs]
