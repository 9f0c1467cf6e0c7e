"""Optuna's samplers over the per-layer actions, through its ask/tell interface (``agent.sampler=tpe|cmaes``).

Each trial is one action per decision point in [-1, 1], played through the action wall like an episode of the
RL agents, and told the episode's reward. Optuna's samplers are deterministic given their seed and the trials
told, so a resumed search re-asks the recorded trials, tells their recorded rewards and continues exactly.
"""

from __future__ import annotations

import optuna
from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.errors import ConfigError
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod
from amc.strategy.runners import SAMPLERS


def make_sampler(name: str, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup_trials)
    raise ConfigError(f"unknown agent.sampler {name!r}; use one of {', '.join(SAMPLERS)}")


class OptunaSearch(ReplayedMethod):
    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)
        self.sampler = make_sampler(agent.sampler or "tpe", seed, agent.warmup_episodes)

    def search(self, evaluator: Evaluator) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=self.sampler)
        space = {f"a{t}": optuna.distributions.FloatDistribution(-1.0, 1.0) for t in range(self.env.steps)}
        while True:
            trial = study.ask(space)
            evaluation = evaluator.strategy([trial.params[f"a{t}"] for t in range(self.env.steps)])
            study.tell(trial, evaluation.reward)
