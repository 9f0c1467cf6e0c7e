"""Multi-fidelity search: many strategies scored cheaply, few expensively (``agent=hyperband``).

A proposer (Optuna's TPE or CMA-ES over one action per decision point, as ``agent=optuna``) suggests a strategy; it is
scored at the first rung's fidelity (the least-squares refit alone), then, while Optuna's pruner lets it go on, at
each further rung (the refit and ``agent.rungs`` steps of distillation from the base), each rung reported to the
pruner as an intermediate value. Optuna's ``SuccessiveHalvingPruner`` (or ``HyperbandPruner``, ``agent.pruner``)
stops the strategies below the best fraction of their rung. Every rung's score is one evaluation of the search's
budget and one recorded episode (its ``evaluator`` says which fidelity); strategies that reach the last rung carry
the highest scores, so the export picks among them. Under ``search_cpu_s`` the search ends before a rung it expects
not to finish within the CPU seconds left, rather than overrunning them by a long distillation. Deterministic given
the seed, the scores and their recorded CPU seconds, so a resumed search replays its recorded evaluations and
continues exactly (``amc.strategy.methods.base``).
"""

from __future__ import annotations

import logging
import statistics

import numpy as np
import optuna
from stable_baselines3.common.vec_env import VecEnv

from amc.envs import ChannelPruningEnv
from amc.errors import ConfigError
from amc.settings import AgentConfig
from amc.strategy.methods.base import Evaluator, ReplayedMethod, StopSearch, method_option
from amc.strategy.methods.optuna_search import make_sampler

log = logging.getLogger(__name__)

PRUNERS = ("successive_halving", "hyperband")


def expected_cpu_s(measured: dict[int, list[float]], steps: int) -> float | None:
    """CPU seconds one evaluation at ``steps`` distillation steps should take: the mean of those measured at that
    fidelity; else the straight line through each measured fidelity's mean (distillation costs per step), when two
    or more are measured; else unknown (``None``).

    :param measured: CPU seconds of each evaluation so far, by its fidelity's steps.
    """
    means = {s: statistics.fmean(costs) for s, costs in measured.items() if costs}
    if steps in means:
        return means[steps]
    if len(means) < 2:
        return None
    slope, intercept = np.polyfit(list(means), list(means.values()), 1)
    return max(float(intercept + slope * steps), 0.0)


def make_pruner(name: str, rungs: int, reduction: int) -> optuna.pruners.BasePruner:
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=rungs, reduction_factor=reduction)
    raise ConfigError(f"unknown agent.pruner {name!r}; use one of {', '.join(PRUNERS)}")


class MultiFidelity(ReplayedMethod):
    """``agent=hyperband``: each candidate is scored at rising distillation steps until Optuna's pruner stops it."""

    OPTIONS = ("rungs", "pruner", "reduction_factor")  # agent.options keys (defaults: conf/agent/NAME.yaml)

    def __init__(self, env: ChannelPruningEnv, agent: AgentConfig, seed: int, workers: VecEnv | None = None) -> None:
        super().__init__(env)
        self.rungs, pruner, reduction = self.check_options(agent)
        if not hasattr(env.scorer, "use_fidelity"):
            raise ConfigError("agent=hyperband needs amc's scorer (its fidelities are steps of distillation)")
        self.sampler = make_sampler(agent.sampler or "tpe", seed, agent.warmup_episodes)
        self.pruner = make_pruner(pruner, len(self.rungs), reduction)

    @staticmethod
    def check_options(agent: AgentConfig) -> tuple[list[int], str, int]:
        """``agent.options``' rungs, pruner and reduction factor, checked (one line each for a bad one)."""
        rungs = method_option(agent, "rungs")
        if not (isinstance(rungs, (list, tuple)) and rungs and all(isinstance(r, int) for r in rungs)):
            raise ConfigError(f"agent.options.rungs lists distillation steps, e.g. [0,20,60]; got {rungs}")
        if list(rungs) != sorted(set(rungs)) or rungs[0] < 0:
            raise ConfigError(f"agent.options.rungs must be increasing distillation steps from 0, got {list(rungs)}")
        pruner, reduction = str(method_option(agent, "pruner")), method_option(agent, "reduction_factor")
        if pruner not in PRUNERS:
            raise ConfigError(f"unknown agent.options.pruner {pruner!r}; use one of {', '.join(PRUNERS)}")
        if not isinstance(reduction, int) or reduction < 2:
            raise ConfigError(f"agent.options.reduction_factor={reduction}: want an integer ≥ 2")
        return list(rungs), pruner, reduction

    def search(self, evaluator: Evaluator) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=self.sampler, pruner=self.pruner)
        space = {f"a{t}": optuna.distributions.FloatDistribution(-1.0, 1.0) for t in range(self.env.steps)}
        scorer = self.env.scorer
        measured: dict[int, list[float]] = {steps: [] for steps in self.rungs}
        while True:
            trial = study.ask(space)
            actions = [trial.params[f"a{t}"] for t in range(self.env.steps)]
            for rung, steps in enumerate(self.rungs):
                self._stop_unless_affordable(measured, steps, evaluator.cpu_left)
                scorer.use_fidelity(steps)
                spent_before = evaluator.cpu_spent
                evaluation = evaluator.strategy(actions)
                measured[steps].append(evaluator.cpu_spent - spent_before)
                trial.report(evaluation.reward, rung + 1)
                if rung + 1 < len(self.rungs) and trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, evaluation.reward)

    @staticmethod
    def _stop_unless_affordable(measured: dict[int, list[float]], steps: int, cpu_left: float | None) -> None:
        """End the search when the next evaluation, at ``steps``, is expected to overrun the CPU seconds left."""
        expected = expected_cpu_s(measured, steps)
        if cpu_left is not None and expected is not None and expected > cpu_left:
            log.info(
                f"hyperband: an evaluation at {steps} distillation steps takes about {expected:.1f} CPU s, more "
                f"than the {cpu_left:.1f} left of search_cpu_s; the search ends here"
            )
            raise StopSearch
