"""The uniform baseline: one keep ratio for every layer, the largest whose rounded channels meet the budget."""

from __future__ import annotations

from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod


class Uniform(ReplayedMethod):
    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)

    def search(self, evaluator: Evaluator) -> None:
        evaluator.strategy_of_channels(self.env.wall.uniform())
