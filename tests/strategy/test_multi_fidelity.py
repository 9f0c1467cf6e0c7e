"""The multi-fidelity search keeps ``search_cpu_s``: it ends before a rung it expects to overrun the CPU seconds
left, and a resumed search makes the same decisions from the recorded seconds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from amc.errors import ConfigError
from amc.settings import AgentConfig
from amc.strategy.methods.multi_fidelity import MultiFidelity, expected_cpu_s

RUNGS = [0, 20, 60, 200]


def cost_of(steps: int) -> float:
    """CPU seconds an evaluation at ``steps`` distillation steps is charged: a refit plus a cost per step."""
    return 0.37 + 0.15 * steps  # not a divisor of the budget: an overrun cannot land on it exactly


class Scorer:
    def __init__(self) -> None:
        self.steps = 0

    def use_fidelity(self, kd_steps: int) -> None:
        self.steps = kd_steps


class Env:
    """Three decision points; the score rewards actions near 0.3 and rises with the fidelity, as distillation does."""

    steps = 3

    def __init__(self) -> None:
        self.scorer = Scorer()

    def decide(self, actions: list[float]) -> list[float]:
        return actions

    def evaluate(self, channels: list[float], fill: bool) -> SimpleNamespace:
        reward = -sum((a - 0.3) ** 2 for a in channels) + 0.001 * self.scorer.steps
        return SimpleNamespace(channels=channels, reward=reward, accuracy=reward, cost_ratio=0.5)


class Session:
    """Records evaluations as the search loop does, each charged the CPU seconds of its fidelity."""

    def __init__(self, env: Env, cpu_s: float | None, episodes: int = 1000, recorded: list[dict] | None = None):
        self.env, self.cpu_s, self.episodes = env, cpu_s, episodes
        self.rows = list(recorded or [])

    @property
    def cpu_spent(self) -> float:
        return sum(r["cpu_s"] for r in self.rows)

    def history(self) -> list[dict]:
        return list(self.rows)

    def wants_more(self) -> bool:
        return len(self.rows) < self.episodes and (self.cpu_s is None or self.cpu_spent < self.cpu_s)

    def episode_done(self, result) -> bool:
        steps = self.env.scorer.steps
        self.rows.append(
            {"episode": len(self.rows), "channels": result.channels, "reward": result.reward,
             "accuracy": result.accuracy, "cost_ratio": result.cost_ratio, "cpu_s": cost_of(steps), "steps": steps}
        )  # fmt: skip
        return self.wants_more()

    def checkpoint(self) -> None:
        pass


def searched(cpu_s: float | None, episodes: int = 1000, recorded: list[dict] | None = None) -> list[dict]:
    env = Env()
    method = MultiFidelity(env, agent_config(rungs=RUNGS), seed=3)
    session = Session(env, cpu_s, episodes, recorded)
    method.run(episodes, session)
    return session.rows


def agent_config(**options: object) -> AgentConfig:
    """The hyperband method's settings, as conf/agent/hyperband.yaml composes them, with ``options`` over them."""
    shipped = {"rungs": RUNGS, "pruner": "successive_halving", "reduction_factor": 3}
    return AgentConfig(name="hyperband", sampler="tpe", warmup_episodes=3, options={**shipped, **options})


def test_a_hand_built_config_without_an_option_is_one_line_naming_it():
    config = agent_config()
    del config.options["reduction_factor"]
    with pytest.raises(ConfigError, match=r"agent.options.reduction_factor is not set \(conf/agent/hyperband.yaml"):
        MultiFidelity(Env(), config, seed=0)


def test_the_expected_seconds_of_a_fidelity_come_from_its_own_evaluations_else_a_line_through_the_others():
    assert expected_cpu_s({0: [], 20: []}, 0) is None
    assert expected_cpu_s({0: [1.0, 2.0], 20: []}, 0) == 1.5
    assert expected_cpu_s({0: [1.0, 2.0], 20: []}, 20) is None  # one fidelity measured: no line yet
    assert expected_cpu_s({0: [0.5], 20: [3.5], 200: []}, 200) == pytest.approx(30.5)


def test_the_search_ends_before_a_rung_that_would_overrun_its_cpu_seconds(caplog):
    caplog.set_level("INFO", logger="amc.strategy.methods.multi_fidelity")
    rows = searched(cpu_s=60.0)
    assert sum(r["cpu_s"] for r in rows) <= 60.0  # never an evaluation that ran past the budget
    # the first strategy took every rung (43.5 s); the second reached 60 steps, and 200 more would not fit
    assert [r["steps"] for r in rows] == [*RUNGS, 0, 20, 60]
    assert "an evaluation at 200 distillation steps takes about 30.4 CPU s, more than the 3.4 left" in caplog.text
    unbounded = searched(cpu_s=None, episodes=len(rows) + 1)
    assert sum(r["cpu_s"] for r in unbounded) > 60.0  # without the budget the same search goes on


def test_a_resumed_search_decides_from_the_recorded_seconds_as_the_killed_one_did():
    whole = searched(cpu_s=60.0)
    for killed_after in range(1, len(whole)):
        resumed = searched(cpu_s=60.0, recorded=whole[:killed_after])
        assert [(r["channels"], r["steps"]) for r in resumed] == [(r["channels"], r["steps"]) for r in whole]
