"""One call from a model and a channel list to a physically smaller, reconstructed model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from amc.choices import Reconstruction
from amc.errors import ConfigError
from amc.pruning.lsq_ranking import lsq_channel_scores
from amc.pruning.reconstruction import ConsumerStats, OpenLoopReconstructor, closed_loop_overrides
from amc.pruning.slicing import channel_scores, check_channels, select_channels, slice_model
from amc.pruning.structure import PrunableStructure

RECONSTRUCTIONS = tuple(Reconstruction)


def selection_scores(
    model: nn.Module,
    structure: PrunableStructure,
    selection: str = "l1",
    seed: int = 0,
    stats: dict[str, ConsumerStats] | None = None,
) -> list[torch.Tensor]:
    """Importance of every decision point's channels by ``selection`` (higher = keep).

    ``lsq`` ranks by greedy least-squares elimination (``amc.pruning.lsq_ranking``) on the open-loop
    calibration ``stats``; a point that no refit consumer reads falls back to ``l1``.
    """
    if selection == "lsq":
        if stats is None:
            raise ConfigError("selection=lsq ranks channels by the least-squares statistics: it needs reconstruction")
        ranked = zip(lsq_channel_scores(structure, stats), structure.points, strict=True)
        return [s if s is not None else channel_scores(model, p, "l1") for s, p in ranked]
    generator = torch.Generator().manual_seed(seed)
    return [channel_scores(model, point, selection, generator) for point in structure.points]


def keep_indices(
    model: nn.Module,
    structure: PrunableStructure,
    channels: Sequence[int],
    selection: str = "l1",
    seed: int = 0,
    stats: dict[str, ConsumerStats] | None = None,
) -> list[torch.Tensor]:
    """Which channels each decision point keeps, by ``selection`` (see ``selection_scores``)."""
    channels = check_channels(structure, channels)
    scores = selection_scores(model, structure, selection, seed, stats)
    return [select_channels(s, c) for s, c in zip(scores, channels, strict=True)]


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
    open_loop = None
    if selection == "lsq" and calibration_images is not None and len(calibration_images):
        open_loop = OpenLoopReconstructor(model, structure, calibration_images, points_per_image, seed)
    keep = keep_indices(model, structure, channels, selection, seed, open_loop.stats if open_loop else None)
    overrides = None
    if reconstruction != "none":
        overrides = reconstruction_overrides(
            model, structure, keep, reconstruction, calibration_images, points_per_image, seed, open_loop
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
    open_loop: OpenLoopReconstructor | None = None,
) -> dict[str, torch.Tensor]:
    """Least-squares consumer weights for ``keep``: ``open`` loop (as AMC) or ``closed`` loop.

    :param open_loop: statistics already collected on these images (for an lsq ranking), reused by ``open``.
    """
    if calibration_images is None or len(calibration_images) == 0:
        raise ConfigError("reconstruction needs calibration images")
    if mode == "open":
        open_loop = open_loop or OpenLoopReconstructor(model, structure, calibration_images, points_per_image, seed)
        return open_loop.overrides(keep)
    if mode == "closed":
        return closed_loop_overrides(model, structure, keep, calibration_images, points_per_image, seed)
    raise ConfigError(f"unknown reconstruction {mode!r}; use open or closed")
