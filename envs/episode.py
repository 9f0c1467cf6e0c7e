"""What one finished episode produced: the typed result the environment hands to the search loop."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EpisodeResult:
    """A scored strategy.

    :param channels: kept channels per decision point, as scored (after the budget fill).
    :param agent_channels: the counts the agent chose, before the fill.
    :param accuracy: the search metric (search-val top-1 or top-5, percent) the reward is built from.
    :param cost_ratio: the constraint's cost (MACs, params or latency) over the base network's.
    :param timings: seconds spent in prune / reconstruct / evaluate.
    :param reused_stages: early stages whose cached activations the scorer reused.
    :param measured_cost_ratio: latency budgets: the end-to-end measured latency ratio, for strategies that were
        timed (each new best); ``None`` otherwise.
    :param over_budget: it was timed and missed the latency budget: never the exported strategy.
    :param evaluator: how it was rebuilt and scored (``lsq``, ``lsq+kd60``): a multi-fidelity search mixes them.
    """

    channels: list[int]
    agent_channels: list[int]
    keep_ratios: list[float]
    macs: int
    params: int
    cost: float
    cost_ratio: float
    accuracy: float
    top1: float
    top5: float
    reward: float
    timings: dict[str, float] = field(default_factory=dict)
    reused_stages: int = 0
    measured_cost_ratio: float | None = None
    over_budget: bool = False
    evaluator: str = ""
