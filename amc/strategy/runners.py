"""The three ways a search proposes strategies, behind one interface the search loop drives.

Each runner plays episodes in the environment and hands every finished one to the session; the
session records it and, at the runner's safe boundaries, saves the runner's state, so all three
resume through the same files (``amc.strategy.state``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from amc.errors import AmcError
from amc.settings import AgentConfig
from amc.strategy.agents import build_ddpg, ddpg_state, load_ddpg_state
from amc.strategy.episode import EpisodeResult
from amc.strategy.state import SavedSearch
from envs import ChannelPruningEnv

AGENTS = ("ddpg", "random", "uniform")


class WorkerDied(AmcError):
    """A ``workers=N`` scoring process is gone; what the search saved is intact."""


class Session(Protocol):
    def episode_done(self, result: EpisodeResult) -> bool:
        """Record a finished episode; false when this invocation should stop."""

    def checkpoint(self) -> None:
        """Save the runner's state: called where a resume can continue exactly."""

    def wants_more(self) -> bool: ...


class Runner(Protocol):
    def state(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(JSON scalars, tensors) that restore the runner, or ``None`` when it has nothing to resume."""

    def restore(self, saved: SavedSearch) -> None: ...

    def run(self, episodes_left: int, session: Session) -> None: ...


class _RecordEpisodes(BaseCallback):
    """Hands each finished episode to the session; saves state at each episode boundary, after the
    agent's update (a stop or a kill loses at most the episode in flight, which a resume replays)."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def _on_rollout_start(self) -> None:
        self.session.checkpoint()

    def _on_step(self) -> bool:
        go_on = True
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                go_on = self.session.episode_done(info["result"]) and go_on
        return go_on


class DDPGRunner:
    """AMC's agent (``amc.strategy.agents.AMCDDPG``), over one environment or a VecEnv of workers."""

    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        self.env, self.workers = env, workers
        self.agent = build_ddpg(workers or env, env.steps, agent, seed)

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors, scalars = ddpg_state(self.agent)
        return scalars, tensors

    def restore(self, saved: SavedSearch) -> None:
        load_ddpg_state(self.agent, saved.tensors, saved.agent)

    def run(self, episodes_left: int, session: Session) -> None:
        try:
            self.agent.learn(
                total_timesteps=episodes_left * self.env.steps,
                callback=_RecordEpisodes(session),
                reset_num_timesteps=False,
                progress_bar=False,
            )
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            if self.workers is None:
                raise
            raise WorkerDied("a scoring worker process died (killed, or out of memory)") from error
        finally:
            if self.workers is not None:
                with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
                    self.workers.close()


class RandomRunner:
    """Random search: uniform keep ratios, through the same environment and scoring."""

    def __init__(self, env: ChannelPruningEnv, seed: int) -> None:
        self.env = env
        self.rng = np.random.default_rng(seed)

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"rng": self.rng.bit_generator.state}, {}

    def restore(self, saved: SavedSearch) -> None:
        self.rng.bit_generator.state = saved.agent["rng"]

    def run(self, episodes_left: int, session: Session) -> None:
        while session.wants_more():
            self.env.reset()
            info: dict[str, Any] = {}
            for _ in range(self.env.steps):
                _, _, _, _, info = self.env.step(self.rng.uniform(-1, 1, size=1).astype(np.float32))
            go_on = session.episode_done(info["result"])
            session.checkpoint()
            if not go_on:
                return


class UniformRunner:
    """The uniform baseline: the largest single keep ratio whose rounded channels meet the budget."""

    def __init__(self, env: ChannelPruningEnv) -> None:
        self.env = env

    def state(self) -> None:
        return None

    def restore(self, saved: SavedSearch) -> None:
        pass

    def run(self, episodes_left: int, session: Session) -> None:
        channels = self.env.wall.uniform()
        result = self.env.evaluate(channels)
        result.agent_channels = channels
        session.episode_done(result)


def make_runner(env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> Runner:
    """The runner for ``agent.name``; ``workers`` (parallel environments) serve the DDPG agent."""
    if agent.name == "ddpg":
        return DDPGRunner(env, agent, seed, workers)
    if agent.name == "random":
        return RandomRunner(env, seed)
    return UniformRunner(env)
