"""A tiny, self-contained pruning task (digits + a narrow MobileNetV1) for ``gymnasium.make`` and tests."""

from __future__ import annotations

from typing import Any

import torch

from amc.data import build_data, stack_dataset
from amc.envs import ChannelPruningEnv
from amc.models import create_model
from amc.pruning.structure import analyse
from amc.strategy.budget import ActionWall, make_constraint
from amc.strategy.scoring import ScorerSettings, ScoringImages, StrategyScorer


def tiny_task(
    flops_budget: float = 0.5,
    seed: int = 0,
    lower_bound: float = 0.2,
    channel_round: int = 4,
    calibration_images: int = 64,
) -> tuple[StrategyScorer, ActionWall]:
    torch.manual_seed(seed)
    model = create_model(
        "mobilenet_v1", cfg=[16, (32, 2), 32, (64, 2)], in_planes=8, in_channels=1, num_classes=10, small_input=True
    ).eval()
    data = build_data("digits", search_val_size=300, augment=False)
    val_x, val_y = stack_dataset(data.search_val)
    calib = stack_dataset(data.train, limit=calibration_images)[0]
    structure = analyse(model, (1, 1, 8, 8))
    scorer = StrategyScorer(
        model, structure, ScoringImages(val_x, val_y, calib), ScorerSettings(points_per_image=4, seed=seed)
    )
    wall = ActionWall(structure, make_constraint("flops", flops_budget, structure), lower_bound, channel_round)
    return scorer, wall


def make_env(scorer: StrategyScorer | None = None, wall: ActionWall | None = None, **kwargs: Any) -> ChannelPruningEnv:
    """``gymnasium.make("amc/ChannelPruning-v0", ...)``: the env over ``scorer`` and ``wall``, or over the tiny
    digits task (its settings as keywords: ``flops_budget``, ``seed``, ...) when they are not given."""
    env_keys = ("reward", "fill_budget", "latency_probe", "latency_slack")
    env_kwargs = {k: kwargs.pop(k) for k in env_keys if k in kwargs}
    if scorer is None or wall is None:
        scorer, wall = tiny_task(**kwargs)
    return ChannelPruningEnv(scorer, wall, **env_kwargs)
