"""Network slimming as in HW7: rank channels by the BatchNorm γ after each depthwise conv, keep the top ones."""

from __future__ import annotations

import torch.nn as nn

from amc.pruning import channel_scores, select_channels, slice_model
from amc.structure import analyse
from models.hw7_student import student_widths


def slim_student(model: nn.Module, width_mult: float, input_size: tuple[int, ...]) -> nn.Module:
    """A StudentNet of ``width_mult`` holding the channels with the largest (signed) BN γ, best first.

    Best-first order (not index order) follows the course; at the same width it is a pure permutation.
    """
    structure = analyse(model, input_size)
    base = model.arch["kwargs"].get("base", 16)
    target = student_widths(base, width_mult)[: len(structure.points)]
    keep = [
        select_channels(channel_scores(model, point, "bn_gamma"), count, sort=False)
        for point, count in zip(structure.points, target, strict=True)
    ]
    return slice_model(model, structure, keep)
