"""``ChannelPruningEnv``: AMC's layer-by-layer channel-pruning MDP as a Gymnasium environment.

One episode walks the decision points of a network (``amc.pruning.structure``). At step t the agent
sees the layer embedding (``envs.observation``) and answers a keep ratio; the action wall turns
it into a channel count that provably meets the budget. After the last step the strategy is
(optionally) topped up to spend budget that rounding left over, the network is physically
pruned, reconstructed by least squares and scored on search-val; the reward comes only then.

Action: ``Box(-1, 1, (1,))`` (the symmetric range stable-baselines3 recommends), mapped linearly
to a keep ratio in ``[lower_bound, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from amc.choices import Reward
from amc.envs.episode import EpisodeResult
from amc.envs.interfaces import Scorer, Wall
from amc.envs.observation import FEATURES, LayerEmbedding
from amc.errors import ConfigError

REWARDS = tuple(Reward)


def reward_of(kind: str, accuracy: float, macs: int, params: int) -> float:
    """AMC's rewards: accuracy (×0.01), or error × log(cost) (the paper's R_FLOPs), or its params twin."""
    if kind == "acc":
        return 0.01 * accuracy
    if kind == "acc_flops":
        return -(100 - accuracy) * 0.01 * math.log(macs)
    if kind == "acc_params":
        return -(100 - accuracy) * 0.01 * math.log(params)
    raise ConfigError(f"unknown reward {kind!r}; use one of {', '.join(REWARDS)}")


class ChannelPruningEnv(gym.Env):
    """AMC's channel-pruning environment.

    :param scorer: prunes, reconstructs and evaluates a channel list (``amc.strategy.scoring.StrategyScorer``).
    :param wall: the budget's action wall (``amc.strategy.budget.ActionWall``).
    :param reward: ``acc`` (default), ``acc_flops`` or ``acc_params``.
    :param fill_budget: make the finished strategy spend the budget: scale every layer by one common
        factor (keeping the agent's allocation across layers), then spend what rounding leaves.
    :param latency_probe: latency budgets: times a strategy end to end and returns its latency ratio to the
        base (``amc.strategy.latency.EndToEndProbe``). Every strategy that beats the best one timed within
        budget so far is timed; one that misses the budget is marked ``over_budget``.
    :param latency_slack: how far over the budget (a fraction) a timed strategy may measure and still count.
    ``gymnasium.make("amc/ChannelPruning-v0")`` without a scorer builds a tiny MobileNetV1 task on scikit-learn's
    digits (``amc.strategy.tiny.make_env``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        scorer: Scorer,
        wall: Wall,
        reward: str = "acc",
        fill_budget: bool = True,
        latency_probe: Callable[[list[int]], float] | None = None,
        latency_slack: float = 0.01,
    ) -> None:
        super().__init__()
        self.latency_slack = latency_slack
        reward_of(reward, 50.0, 2, 2)  # validate the name now, not at the end of the first episode
        self.scorer, self.wall, self.reward_kind, self.fill_budget = scorer, wall, reward, fill_budget
        self.latency_probe = latency_probe
        self._best_timed_reward = -math.inf
        self._timed_over: set[tuple[int, ...]] = set()  # channel sets timed over the budget: over for good
        self.structure = scorer.structure
        self.embedding = LayerEmbedding(self.structure, wall)
        self.lower_bound = min(m / w for m, w in zip(wall.minimum, self.structure.widths, strict=True))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (len(FEATURES),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.steps = len(self.structure.points)
        self._decided: list[int] = []
        self._previous_ratio = 1.0

    def keep_ratio(self, action: np.ndarray | float) -> float:
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        return self.lower_bound + (a + 1) / 2 * (1 - self.lower_bound)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._decided, self._previous_ratio = [], 1.0
        return self.embedding(0, [], 1.0), {}

    def step(self, action):
        t = len(self._decided)
        count = self.wall.choose(self._decided, t, self.keep_ratio(action))
        self._decided.append(count)
        self._previous_ratio = count / self.structure.widths[t]
        if t + 1 < self.steps:
            return self.embedding(t + 1, self._decided, self._previous_ratio), 0.0, False, False, {}
        result = self.evaluate(self._decided)
        observation = self.embedding(t, self._decided, self._previous_ratio)
        return observation, result.reward, True, False, {"result": result}

    def decide(self, actions: Sequence[float]) -> list[int]:
        """The channels an episode of ``actions`` (one per decision point, in [-1, 1]) gets from the action wall."""
        decided: list[int] = []
        for t, action in enumerate(actions):
            decided.append(self.wall.choose(decided, t, self.keep_ratio(action)))
        return decided

    def action_of(self, keep_ratio: float) -> float:
        """The action whose keep ratio is ``keep_ratio`` (clipped to the action range)."""
        return float(np.clip(2 * (keep_ratio - self.lower_bound) / max(1e-9, 1 - self.lower_bound) - 1, -1.0, 1.0))

    def evaluate(self, channels: list[int], fill: bool = True) -> EpisodeResult:
        """Score a finished strategy (the last step's ``info["result"]``).

        :param fill: spend the budget the strategy leaves (``fill_budget``); false scores ``channels`` as they are,
            as a method's probe of a network that need not meet the budget.
        """
        wanted = list(channels)
        if fill and self.fill_budget:
            channels = self.wall.fill(self.wall.scale_to_budget(channels))
        score = self.scorer.score(channels)
        macs, params = self.structure.macs(channels), self.structure.params(channels)
        constraint = self.wall.constraint
        result = EpisodeResult(
            channels=channels,
            agent_channels=wanted,
            keep_ratios=[c / w for c, w in zip(channels, self.structure.widths, strict=True)],
            macs=macs,
            params=params,
            cost=constraint.cost(channels),
            cost_ratio=constraint.cost(channels) / constraint.base_cost,
            accuracy=score.accuracy,
            top1=score.top1,
            top5=score.top5,
            reward=reward_of(self.reward_kind, score.accuracy, macs, params),
            timings=score.timings,
            reused_stages=score.reused_stages,
            evaluator=getattr(self.scorer, "description", ""),
        )
        if self.latency_probe is not None and tuple(channels) in self._timed_over:
            result.over_budget = True  # timed over once: not timed again (the recorder marks it over too)
        elif self.latency_probe is not None and result.reward > self._best_timed_reward:
            result.measured_cost_ratio = self.latency_probe(channels)
            result.over_budget = result.measured_cost_ratio > constraint.budget * (1 + self.latency_slack)
            if result.over_budget:
                self._timed_over.add(tuple(channels))
            else:
                self._best_timed_reward = result.reward
        return result
