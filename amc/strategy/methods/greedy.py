"""Greedy per-layer selection in the manner of NetAdapt (and AIMET's greedy ratio selection).

The network is shrunk in ``agent.rounds`` rounds (default: as many as the evaluations allow, one per decision
point each). Round k sets a cost target k/rounds of the way from the base to the budget; each decision point in
turn is cut alone to the largest count that meets it and scored, and the best of those becomes the next network.
The last round's proposals meet the budget: they are filled to it and scored as episodes; earlier ones are probes.
"""

from __future__ import annotations

from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod


class Greedy(ReplayedMethod):
    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)
        self.rounds = agent.rounds

    def minimum_evaluations(self) -> int:
        """Each round scores every decision point once."""
        return (self.rounds or 1) * len(self.env.structure.widths)

    def search(self, evaluator: Evaluator) -> None:
        wall, widths = self.env.wall, list(self.env.structure.widths)
        constraint = wall.constraint
        rounds = self.rounds or evaluator.left // len(widths)
        current = widths
        for k in range(1, rounds + 1):
            last = k == rounds
            target = constraint.base_cost - k * (constraint.base_cost - constraint.limit) / rounds
            if constraint.cost(current) <= target:
                if last:
                    evaluator.strategy_of_channels(current)
                    return
                continue
            proposals = []
            for i, allowed in enumerate(wall.allowed):
                cut = [c for c in allowed if c < current[i]]
                fitting = [c for c in cut if constraint.cost([*current[:i], c, *current[i + 1 :]]) <= target]
                if fitting:
                    proposals.append([*current[:i], max(fitting), *current[i + 1 :]])
            if not proposals:  # no single cut reaches the target: the action wall cuts the rest
                ratios = [c / w for c, w in zip(current, widths, strict=True)]
                evaluator.strategy([self.env.action_of(r) for r in ratios])
                return
            score = evaluator.strategy_of_channels if last else evaluator.probe
            scored = [(score(p).reward, n) for n, p in enumerate(proposals)]
            current = proposals[max(scored, key=lambda s: (s[0], -s[1]))[1]]  # ties: the earliest layer
