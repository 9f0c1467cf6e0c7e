"""Optuna's samplers over the per-layer actions, through its ask/tell interface (``agent.sampler=tpe|cmaes``).

Each trial is one action per decision point in [-1, 1], played through the action wall like an episode of the
RL agents, and told the episode's reward. ``agent.options.start=uniform`` searches around the uniform allocation
instead of the whole space: the first trial is uniform itself, and each later one moves every action by at most
``agent.options.radius`` from uniform's (the sampler searches the moves, so CMA-ES starts at uniform, with a first
step of a third of the radius). Optuna's samplers are deterministic given their seed and the trials
told, so a resumed search re-asks the recorded trials, tells their recorded rewards and continues exactly.
"""

from __future__ import annotations

import optuna
from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.errors import ConfigError
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod, method_option
from amc.strategy.runners import SAMPLERS


def make_sampler(name: str, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup_trials)
    raise ConfigError(f"unknown agent.sampler {name!r}; use one of {', '.join(SAMPLERS)}")


def uniform_actions(env: ChannelPruningEnv) -> list[float]:
    """The action per decision point that keeps each layer's share of the uniform allocation."""
    widths = env.scorer.structure.widths
    return [env.action_of(c / w) for c, w in zip(env.wall.uniform(), widths, strict=True)]


class OptunaSearch(ReplayedMethod):
    """``agent=optuna``: an Optuna sampler proposes one action per decision point and is told each reward."""

    OPTIONS = ("start", "radius")  # agent.options keys (defaults: conf/agent/NAME.yaml)

    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)
        start, self.radius = self.check_options(agent)
        self.start = uniform_actions(env) if start == "uniform" else None
        self.sampler = make_sampler(agent.sampler or "tpe", seed, agent.warmup_episodes)

    @staticmethod
    def check_options(agent: AgentConfig) -> tuple[str | None, float]:
        """``agent.options``' start point and the radius around it, checked (one line each for a bad one)."""
        start, radius = method_option(agent, "start"), method_option(agent, "radius")
        if start not in (None, "uniform"):
            raise ConfigError(f"agent.options.start={start}: want uniform (or null, the whole space)")
        if not isinstance(radius, (int, float)) or not 0 < radius <= 2:
            raise ConfigError(f"agent.options.radius={radius}: want a half-width in (0, 2] action units")
        return start, float(radius)

    def search(self, evaluator: Evaluator) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=self.sampler)
        centre = self.start or [0.0] * self.env.steps  # each trial is a move from it: within the radius, or anywhere
        reach = self.radius if self.start is not None else 1.0
        space = {f"a{t}": optuna.distributions.FloatDistribution(-reach, reach) for t in range(self.env.steps)}
        if self.start is not None:  # the first trial: no move, scored as the uniform allocation exactly
            study.enqueue_trial({name: 0.0 for name in space})
            trial = study.ask(space)
            study.tell(trial, evaluator.strategy_of_channels(self.env.wall.uniform()).reward)
        while True:
            trial = study.ask(space)
            moves = [trial.params[f"a{t}"] for t in range(self.env.steps)]
            actions = [min(1.0, max(-1.0, c + m)) for c, m in zip(centre, moves, strict=True)]
            evaluation = evaluator.strategy(actions)
            study.tell(trial, evaluation.reward)
