"""One call from a model and a channel list to a physically smaller, reconstructed model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from amc.errors import ConfigError
from amc.pruning.reconstruction import OpenLoopReconstructor, closed_loop_overrides
from amc.pruning.slicing import channel_scores, check_channels, select_channels, slice_model
from amc.pruning.structure import PrunableStructure

RECONSTRUCTIONS = ("none", "open", "closed")


def keep_indices(
    model: nn.Module, structure: PrunableStructure, channels: Sequence[int], selection: str = "l1", seed: int = 0
) -> list[torch.Tensor]:
    """Which channels each decision point keeps, by ``selection`` (l1, l2, bn_gamma, random)."""
    channels = check_channels(structure, channels)
    generator = torch.Generator().manual_seed(seed)
    return [
        select_channels(channel_scores(model, point, selection, generator), c)
        for point, c in zip(structure.points, channels, strict=True)
    ]


def prune_model(
    model: nn.Module,
    structure: PrunableStructure,
    channels: Sequence[int],
    selection: str = "l1",
    reconstruction: str = "open",
    calibration_images: torch.Tensor | None = None,
    points_per_image: int = 10,
    seed: int = 0,
) -> nn.Module:
    """Prune ``model`` to ``channels`` per decision point and return the smaller model.

    :param reconstruction: ``none``, ``open`` (inputs from the original network, as AMC) or
        ``closed`` (inputs from the network pruned so far); both need ``calibration_images``.
    """
    if reconstruction not in RECONSTRUCTIONS:
        raise ConfigError(f"unknown reconstruction {reconstruction!r}; use one of {', '.join(RECONSTRUCTIONS)}")
    keep = keep_indices(model, structure, channels, selection, seed)
    overrides = None
    if reconstruction != "none":
        overrides = reconstruction_overrides(
            model, structure, keep, reconstruction, calibration_images, points_per_image, seed
        )
    return slice_model(model, structure, keep, overrides)


def reconstruction_overrides(
    model: nn.Module,
    structure: PrunableStructure,
    keep: Sequence[torch.Tensor],
    mode: str,
    calibration_images: torch.Tensor | None,
    points_per_image: int = 10,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Least-squares consumer weights for ``keep``: ``open`` loop (as AMC) or ``closed`` loop."""
    if calibration_images is None or len(calibration_images) == 0:
        raise ConfigError("reconstruction needs calibration images")
    if mode == "open":
        return OpenLoopReconstructor(model, structure, calibration_images, points_per_image, seed).overrides(keep)
    if mode == "closed":
        return closed_loop_overrides(model, structure, keep, calibration_images, points_per_image, seed)
    raise ConfigError(f"unknown reconstruction {mode!r}; use open or closed")
