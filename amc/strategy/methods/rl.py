"""Reinforcement-learning agents (AMC's DDPG, TD3, SAC): SB3 plays the episodes, one decision point per step."""

from __future__ import annotations

import contextlib
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.errors import AmcError
from amc.settings import AgentConfig
from amc.strategy.agents import build_ddpg, ddpg_state, load_ddpg_state
from amc.strategy.state import SavedSearch


class WorkerDied(AmcError):
    """A ``workers=N`` scoring process is gone; what the search saved is intact."""


class _RecordEpisodes(BaseCallback):
    """Hands each finished episode to the session; saves state at each episode boundary, after the
    agent's update (a stop or a kill loses at most the episode in flight, which a resume replays)."""

    def __init__(self, session: Any) -> None:
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


class RLRunner:
    """An SB3 off-policy agent set up as AMC (``amc.strategy.agents``), over one environment or a VecEnv of workers.

    :param algorithm: ``ddpg``, ``td3`` or ``sac`` (``agent.algorithm``; default: ``agent.name``).
    """

    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        self.env, self.workers = env, workers
        self.agent = build_ddpg(workers or env, env.steps, agent, seed, algorithm=agent.algorithm or agent.name)

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors, scalars = ddpg_state(self.agent)
        return scalars, tensors

    def restore(self, saved: SavedSearch) -> None:
        load_ddpg_state(self.agent, saved.tensors, saved.agent)

    def run(self, episodes_left: int, session: Any) -> None:
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
