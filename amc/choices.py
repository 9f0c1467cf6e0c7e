"""The string choices of amc's settings, as Enums.

Typed with these in ``amc.settings``, a value outside the choices is refused while Hydra composes the config, in
one line that lists them. Each member is its own string (``Selection["lsq"] == "lsq"``, formats and serialises as
``lsq``), so code, saved configs and library callers that pass plain strings keep working.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A setting's value; the member's name is the value a user types (some are not identifiers: ``lsq+adabn``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def _choice(name: str, *values: str) -> type[Choice]:
    return Choice(name, [(value, value) for value in values], module=__name__, qualname=name)  # type: ignore[return-value]


Reward = _choice("Reward", "acc", "acc_flops", "acc_params")  # AMC's rewards (amc.envs.channel_pruning)
Metric = _choice("Metric", "top1", "top5")  # the search-val accuracy strategies are scored by
Selection = _choice("Selection", "l1", "l2", "bn_gamma", "random", "lsq")  # which channels a layer keeps
Reconstruction = _choice("Reconstruction", "none", "open", "closed")  # the exported weights' least-squares refit
EvalPrecision = _choice("EvalPrecision", "auto", "float32", "bfloat16")
# how a candidate network is rebuilt and scored (amc.strategy.scoring): refit, recalibrate, short-distil, agreement
Evaluator = _choice(
    "Evaluator", "lsq", "adabn", "lsq+adabn", "plain", "kl", "lsq+kl", "lsq+kd", "lsq+kd+adabn", "lsq+kd+kl"
)
OnExisting = _choice("OnExisting", "refuse", "continue")  # a run dir that already holds a search
Algorithm = _choice("Algorithm", "ddpg", "td3", "sac")  # stable-baselines3's agents behind agent=ddpg|td3|sac
Sampler = _choice("Sampler", "tpe", "cmaes")  # Optuna's samplers behind agent=optuna
Distill = _choice("Distill", "ce", "kd", "hint")  # the fine-tuning loss
Optimizer = _choice("Optimizer", "sgd", "adamw")
LatencyRuntime = _choice("LatencyRuntime", "pytorch", "onnxruntime")  # what a latency budget is timed in
MixedPrecision = _choice("MixedPrecision", "bfloat16", "float16")  # train.mixed_precision: autocast's dtype
Tracking = _choice("Tracking", "none", "wandb")  # logger.kind
