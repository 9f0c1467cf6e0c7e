"""The StudentNet of Hung-yi Lee's ML2020 HW7: a small depthwise-separable CNN for Food-11."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from amc.models.registry import ModelConfigError, register_model

MULTIPLIERS = [1, 2, 4, 8, 16, 16, 16, 16]
SCALED_ENTRIES = range(3, 7)  # the course scales only these widths; the last stays fixed for the fc


def student_widths(base: int = 16, width_mult: float = 1.0) -> list[int]:
    """The course's ``bandwidth`` list for ``base`` and ``width_mult``."""
    widths = [base * m for m in MULTIPLIERS]
    return [int(w * width_mult) if i in SCALED_ENTRIES else w for i, w in enumerate(widths)]


def separable_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in),
        nn.BatchNorm2d(c_in),
        nn.ReLU6(),
        nn.Conv2d(c_in, c_out, 1),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, 2, 0))
    return nn.Sequential(*layers)


class StudentNet(nn.Module):
    """``cnn`` = 8 Sequential blocks + global pooling; ``fc`` = one Linear."""

    def __init__(self, widths: Sequence[int], num_classes: int = 11, in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != len(MULTIPLIERS):
            raise ModelConfigError(f"StudentNet needs {len(MULTIPLIERS)} widths, got {len(widths)}")
        w = list(widths)
        blocks: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, w[0], 3, 1, 1), nn.BatchNorm2d(w[0]), nn.ReLU6(), nn.MaxPool2d(2, 2, 0)
            )
        ]
        blocks += [separable_block(w[i - 1], w[i], pool=i <= 3) for i in range(1, 8)]
        self.cnn = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d((1, 1)))
        self.fc = nn.Sequential(nn.Linear(w[7], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))


@register_model("hw7_student")
def hw7_student(
    base: int = 16,
    width_mult: float = 1.0,
    num_classes: int = 11,
    in_channels: int = 3,
    widths: Sequence[int] | None = None,
) -> StudentNet:
    """StudentNet; explicit ``widths`` (e.g. after pruning) override ``base``/``width_mult``."""
    return StudentNet(student_widths(base, width_mult) if widths is None else widths, num_classes, in_channels)
