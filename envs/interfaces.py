"""What the environment needs from the search machinery, as protocols: the env depends on these shapes, not on
``amc.strategy`` (which builds the scorer and the action wall and drives the env)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from amc.pruning.structure import PrunableStructure


class Budget(Protocol):
    kind: str
    budget: float
    base_cost: float
    cost: Callable[[Sequence[int]], float]


class Wall(Protocol):
    """The action wall (``amc.strategy.budget.ActionWall``): channel counts that always meet the budget."""

    structure: PrunableStructure
    constraint: Budget
    minimum: list[int]

    def choose(self, decided: Sequence[int], index: int, keep_ratio: float) -> int: ...

    def scale_to_budget(self, channels: Sequence[int]) -> list[int]: ...

    def fill(self, channels: Sequence[int]) -> list[int]: ...


class Scorer(Protocol):
    """Scores a channel list (``amc.strategy.scoring.StrategyScorer``): accuracy, top1, top5, timings, reused_stages."""

    structure: PrunableStructure

    def score(self, channels: Sequence[int]) -> Any: ...
