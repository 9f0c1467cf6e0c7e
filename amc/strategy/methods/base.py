"""What a search method that proposes whole strategies builds on: an evaluator that counts, records and replays.

A method asks for scores through :class:`Evaluator`. Each call is one evaluation of the search's budget
(``episodes=``): :meth:`Evaluator.strategy` scores a candidate through the action wall, filled to the budget, and
records it as an episode; :meth:`Evaluator.probe` scores a network as given (e.g. one layer pruned) and records it
as a probe. Methods are deterministic given their seed and the scores they saw, so a resumed search replays the
recorded scores to the method, which then continues exactly where the killed run was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amc.envs import ChannelPruningEnv
from amc.errors import AmcError, ConfigError
from amc.settings import AgentConfig
from amc.strategy.state import SavedSearch


def method_option(agent: AgentConfig, key: str) -> Any:
    """``agent.options[key]``: its default is in the method's ``conf/agent/NAME.yaml`` (the one place for it), so
    a config that lacks it was built by hand and gets one line saying what to set."""
    options = agent.options or {}
    if key not in options:
        raise ConfigError(f"agent.options.{key} is not set (conf/agent/{agent.name}.yaml gives its default)")
    return options[key]


class StopSearch(Exception):
    """The search has used its evaluations, or ``stop_after`` ended this invocation."""


class ReplayDiverged(AmcError):
    """A resumed method asked for another network than the killed run had scored at that point."""


@dataclass
class Evaluation:
    """What a method learns from one evaluation."""

    channels: list[int]
    reward: float
    accuracy: float
    cost_ratio: float


class Evaluator:
    """Scores strategies for a method, counting each against the search's evaluations.

    :param env: the search's environment (action wall, scorer, reward).
    :param session: records each evaluation and says when to stop (``amc.strategy.loop.SearchSession``).
    """

    def __init__(self, env: ChannelPruningEnv, session: Any) -> None:
        self.env, self.session = env, session
        self.recorded = session.history()  # what a killed run scored: replayed, not scored again
        self.count = 0
        self.replayed_cpu_s = 0.0

    @property
    def cpu_spent(self) -> float:
        """CPU seconds the evaluations so far have used (a replayed one as it was recorded), as ``search_cpu_s``
        counts them."""
        return self.replayed_cpu_s if self.count <= len(self.recorded) else self.session.cpu_spent

    @property
    def cpu_left(self) -> float | None:
        """CPU seconds left of the search's ``search_cpu_s`` after the evaluations so far; ``None`` without one."""
        budget = getattr(self.session, "cpu_s", None)
        return None if budget is None else budget - self.cpu_spent

    @property
    def left(self) -> int:
        """Evaluations the method may still spend (after the recorded ones are replayed)."""
        return self.session.episodes - self.count

    def strategy(self, actions: Sequence[float]) -> Evaluation:
        """Score the strategy that ``actions`` (one per decision point, in [-1, 1]) get through the action wall,
        filled to the budget: an episode."""
        return self._evaluate(self.env.decide([float(a) for a in actions]), episode=True)

    def strategy_of_channels(self, channels: Sequence[int]) -> Evaluation:
        """Score ``channels`` (which must meet the budget), filled to the budget: an episode."""
        if not self.env.wall.constraint.fits(channels):
            raise ValueError("strategy_of_channels takes channels that meet the budget; use probe() otherwise")
        return self._evaluate(list(channels), episode=True)

    def probe(self, channels: Sequence[int]) -> Evaluation:
        """Score ``channels`` exactly as given, within the budget or not: a probe."""
        return self._evaluate(list(channels), episode=False)

    def _evaluate(self, channels: list[int], episode: bool) -> Evaluation:
        if self.count >= self.session.episodes:
            raise StopSearch
        if self.count < len(self.recorded):
            row = self.recorded[self.count]
            asked = row.get("agent_channels", row["channels"]) if episode else row["channels"]
            if ("episode" in row) != episode or list(asked) != channels:
                raise ReplayDiverged(
                    f"resuming: evaluation {self.count + 1} asks for other channels than the killed run scored "
                    "(was the method's code or setting changed?); start the search again in a new run dir"
                )
            self.count += 1
            self.replayed_cpu_s += row.get("cpu_s", 0.0)
            return Evaluation(list(row["channels"]), row["reward"], row["accuracy"], row["cost_ratio"])
        if not self.session.wants_more():
            raise StopSearch
        result = self.env.evaluate(channels, fill=episode)
        if episode:
            result.agent_channels = channels
        self.count += 1
        go_on = self.session.episode_done(result) if episode else self.session.probe_done(result)
        self.session.checkpoint()
        if not go_on:
            raise StopSearch
        return Evaluation(result.channels, result.reward, result.accuracy, result.cost_ratio)


class ReplayedMethod:
    """A method that resumes by replaying its recorded scores: subclasses implement :meth:`search` only."""

    def __init__(self, env: ChannelPruningEnv) -> None:
        self.env = env

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"replay": True}, {}  # the recorded evaluations are the state

    def restore(self, saved: SavedSearch) -> None:
        pass

    def run(self, episodes_left: int, session: Any) -> None:
        with contextlib.suppress(StopSearch):  # the evaluations are spent, or stop_after was reached
            self.search(Evaluator(self.env, session))

    def search(self, evaluator: Evaluator) -> None:
        raise NotImplementedError
