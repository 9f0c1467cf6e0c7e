"""``amc.make_env``: AMC's channel-pruning environment over your model, for your own agent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
import torch.nn as nn

from amc.api.budget import Budget


def make_env(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    budget: Budget,
    evaluate: Callable[[nn.Module], float] | None = None,
    data: Any = None,
    calibration: Any = None,
    seed: int = 0,
    **options: Any,
) -> gym.Env:
    """The Gymnasium environment ``amc.compress`` searches in, over ``model``: one step per decision point, the
    observation AMC's layer embedding, the action a keep ratio in ``Box(-1, 1)``, the reward the pruned network's
    score (your ``evaluate``, or top-1 on ``data``) at the end of each episode, and every strategy within ``budget``.

    Any stable-baselines3 algorithm for continuous actions learns on it. The finished episode's ``info["result"]``
    holds the channels, MACs, params and score.

    :param model: any ``nn.Module`` torch.fx can trace (it is copied; yours is left unchanged).
    :param example_input: one batch the model takes; costs are counted per sample at its size.
    :param budget: ``Budget(flops=...)``, ``Budget(params=...)`` or ``Budget(latency=...)``.
    :param evaluate: your metric, ``evaluate(network) -> float``, higher is better.
    :param data: instead of ``evaluate``, ``(inputs, labels)`` or a DataLoader to score top-1 on.
    :param calibration: inputs the least-squares refit and channel ranking read (default: ``data``'s inputs).
    :param seed: seeds the channel ranking and the refit's sampling.
    :param options: settings of ``amc.settings.SearchConfig``, as for :func:`amc.compress` (``lower_bound``, ``reward``,
        ``score``, ``fill_budget``, ...).
    """
    from amc.api.compress import prepare_inputs, search_settings
    from amc.api.inputs import private_copy
    from amc.strategy.task import assemble_task

    cfg = search_settings(budget, "random", None, seed, options)
    inputs = prepare_inputs(model, example_input, cfg, evaluate, data, calibration)
    base = private_copy(model).to(inputs.device).eval()
    task = assemble_task(
        cfg, base, inputs.example, inputs.images, inputs.device, evaluate=evaluate, user_calibration=inputs.calibration
    )
    return task.env
