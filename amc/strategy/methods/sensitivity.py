"""FastNAS-style search (NVIDIA ModelOpt): per-layer sensitivity, then one global threshold.

Each decision point is scored alone at each keep ratio of a coarse grid, every other layer at full width (probes).
A threshold on those scores then gives every layer the fewest channels whose score stays at or above it; a binary
search finds the highest threshold whose strategy meets the budget, which is filled to the budget and scored.
``agent.candidates`` > 1 also scores the strategies of the next lower thresholds. ``agent.probes_from=RUN`` reuses
the probes of an earlier sensitivity run over the same base and evaluator (``amc.strategy.probe_reuse``), so another
budget costs only its thresholds' strategies, as ModelOpt re-runs a search from cached sensitivities.
"""

from __future__ import annotations

from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.errors import ConfigError
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod
from amc.strategy.probe_reuse import reusable_probes


class Sensitivity(ReplayedMethod):
    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)
        if not agent.grid:  # conf/agent/sensitivity.yaml holds the default grid
            raise ConfigError("agent=sensitivity needs agent.grid, the keep ratios each layer is probed at")
        self.grid = sorted(agent.grid)
        self.candidates = max(1, agent.candidates or 1)
        self.reused = reusable_probes(agent.probes_from) if agent.probes_from else {}

    def probe_counts(self, index: int) -> list[int]:
        """The counts layer ``index`` is probed at: the grid's ratios on its allowed counts, less its full width."""
        allowed, width = self.env.wall.allowed[index], self.env.structure.widths[index]
        counts = {min(allowed, key=lambda c: (abs(c - r * width), c)) for r in self.grid}
        return sorted(c for c in counts if c < width)

    def probes(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """(decision point, its probed count, the network's channels: that point at the count, the rest full)."""
        widths = tuple(self.env.structure.widths)
        return [(i, c, (*widths[:i], c, *widths[i + 1 :])) for i in range(len(widths)) for c in self.probe_counts(i)]

    def minimum_evaluations(self) -> int:
        """Every probe an earlier run does not lend, and one strategy."""
        return sum(channels not in self.reused for _, _, channels in self.probes()) + 1

    def search(self, evaluator: Evaluator) -> None:
        widths = list(self.env.structure.widths)
        curves: list[dict[int, float]] = [{} for _ in widths]
        for i, count, channels in self.probes():
            reused = self.reused.get(channels)
            curves[i][count] = reused if reused is not None else evaluator.probe(list(channels)).reward
        thresholds = sorted({score for curve in curves for score in curve.values()}, reverse=True)
        fits = self.env.wall.constraint.fits
        best = next((n for n, t in enumerate(thresholds) if fits(self.at_threshold(curves, t))), None)
        if best is None:  # even the smallest probed network misses the budget: the action wall cuts it down
            smallest = self.at_threshold(curves, -float("inf"))
            evaluator.strategy([self.env.action_of(c / w) for c, w in zip(smallest, widths, strict=True)])
            return
        seen: set[tuple[int, ...]] = set()
        for threshold in thresholds[best:]:
            channels = self.at_threshold(curves, threshold)
            if tuple(channels) in seen:
                continue
            seen.add(tuple(channels))
            evaluator.strategy_of_channels(channels)
            if len(seen) >= self.candidates:
                return

    def at_threshold(self, curves: list[dict[int, float]], threshold: float) -> list[int]:
        """Each layer's fewest probed channels scoring at least ``threshold`` (its full width when none does)."""
        widths = self.env.structure.widths
        return [
            min([c for c, score in curve.items() if score >= threshold], default=width)
            for curve, width in zip(curves, widths, strict=True)
        ]
