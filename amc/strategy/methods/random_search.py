"""Random search: uniform keep ratios at every decision point, through the same action wall and scoring."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod


class RandomSearch(ReplayedMethod):
    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)
        self.seed = seed

    def search(self, evaluator: Evaluator) -> None:
        rng = np.random.default_rng(self.seed)
        while True:
            evaluator.strategy([float(rng.uniform(-1, 1)) for _ in range(self.env.steps)])
