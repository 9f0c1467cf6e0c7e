"""The one interface every search method is driven through, and the factory that picks a method by config.

A runner proposes strategies and hands every scored one to the session, which records it and, at the runner's
safe boundaries, saves the runner's state, so all methods resume through the same files (``amc.strategy.state``).
``agent.runner`` in ``conf/agent/NAME.yaml`` names the runner class: a new method is one module and one config.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from stable_baselines3.common.vec_env import VecEnv

from amc.choices import Algorithm, Sampler
from amc.envs import ChannelPruningEnv
from amc.envs.episode import EpisodeResult
from amc.errors import ConfigError
from amc.settings import AgentConfig
from amc.strategy.methods.rl import WorkerDied
from amc.strategy.state import SavedSearch

__all__ = ["AGENTS", "BATCHED_AGENTS", "SAMPLERS", "Runner", "Session", "WorkerDied", "make_runner", "runner_class"]

AGENTS = ("ddpg", "td3", "sac", "sensitivity", "greedy", "optuna", "hyperband", "random", "uniform")  # conf/agent/
SAMPLERS = tuple(Sampler)  # agent=optuna agent.sampler=...
BATCHED_AGENTS = tuple(Algorithm)  # learn from batches of episodes, so workers=N can score them at once


class Session(Protocol):
    episodes: int  # the search's evaluations, probes included
    cpu_s: float | None  # the search's CPU seconds (search_cpu_s), or None

    @property
    def cpu_spent(self) -> float:
        """CPU seconds the recorded evaluations have used."""

    def episode_done(self, result: EpisodeResult) -> bool:
        """Record a finished episode; false when this invocation should stop."""

    def probe_done(self, result: EpisodeResult) -> bool:
        """Record a method's probing evaluation (it counts toward ``episodes``); false when it should stop."""

    def checkpoint(self) -> None:
        """Save the runner's state: called where a resume can continue exactly."""

    def wants_more(self) -> bool: ...

    def history(self) -> list[dict[str, Any]]:
        """Every evaluation recorded so far (after a resume: the killed run's), in order."""


class Runner(Protocol):
    def state(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(JSON scalars, tensors) that restore the runner, or ``None`` when it has nothing to resume."""

    def restore(self, saved: SavedSearch) -> None: ...

    def run(self, episodes_left: int, session: Session) -> None: ...


def minimum_evaluations(runner: Runner) -> int:
    """Evaluations ``runner`` needs to score one strategy: a method that probes first says how many
    (``minimum_evaluations()``); any other needs one."""
    needs = getattr(runner, "minimum_evaluations", None)
    return needs() if callable(needs) else 1


def runner_class(agent: AgentConfig) -> type:
    """The class ``agent.runner`` names (a dotted path the user's config gives)."""
    if not agent.runner:
        raise ConfigError(f"agent={agent.name} names no runner: set agent.runner=pkg.module.RunnerClass")
    module_name, _, attr = agent.runner.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr, None) if module_name else None
    except ImportError as error:
        raise ConfigError(f"agent.runner={agent.runner}: cannot import {module_name!r} ({error})") from None
    if not isinstance(found, type):
        raise ConfigError(f"agent.runner={agent.runner} is not a class (runner: (env, agent, seed, workers))")
    return found


def make_runner(env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> Runner:
    """The runner for ``agent``; ``workers`` (parallel environments) serve the RL agents."""
    return runner_class(agent)(env, agent, seed, workers)
