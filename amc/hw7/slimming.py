"""Network slimming as in HW7: rank channels by the BatchNorm γ after each depthwise conv, keep the top ones."""

from __future__ import annotations

import torch.nn as nn

from amc.models.hw7_student import student_widths
from amc.pruning.slicing import select_channels, slice_model
from amc.pruning.structure import analyse

LAST_CONV = "cnn.7.3"


def slim_student(model: nn.Module, width_mult: float, input_size: tuple[int, ...]) -> nn.Module:
    """A StudentNet of ``width_mult`` holding the channels with the largest (signed) BN γ, best first.

    Best-first order (not index order) follows the course; at the same width it is a pure permutation.
    """
    structure = analyse(model, input_size, fixed=(LAST_CONV,))  # the course keeps the width feeding the fc
    base = model.arch["kwargs"].get("base", 16)
    target = student_widths(base, width_mult)[: len(structure.points)]
    modules = dict(model.named_modules())
    keep = []
    for point, count in zip(structure.points, target, strict=True):
        after_depthwise = [n for n in point.passthrough if isinstance(modules[n], nn.BatchNorm2d)][-1]
        keep.append(select_channels(modules[after_depthwise].weight.detach().float().cpu(), count, sort=False))
    return slice_model(model, structure, keep)
