"""MobileNetV2 in torchvision's layout, with every block an ``nn.Sequential``-wrapped module."""

from __future__ import annotations

import torch
import torch.nn as nn

from amc.models.registry import register_model

# (expansion t, output channels c, repeats n, first stride s) of the paper.
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` without losing more than 10 % (torchvision's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise (3×3) → project (1×1, linear); residual add when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, hidden: int, expand: bool) -> None:
        super().__init__()
        self.use_residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand:
            layers.append(conv_bn(c_in, hidden, 1, 1))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, c_out, 1, 1, relu=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        small_input: bool = False,
        in_channels: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        c_in = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        specs = []  # (c_in, c_out, stride, default hidden, expand)
        for t, c, n, s in SETTINGS:
            c_out = make_divisible(c * width_mult)
            for i in range(n):
                specs.append((c_in, c_out, s if i == 0 else 1, round(c_in * t), t != 1))
                c_in = c_out
        hidden = [spec[3] for spec in specs]
        blocks: list[nn.Module] = [conv_bn(in_channels, specs[0][0], 3, 1 if small_input else 2)]
        for (a, b, stride, _, expand), h in zip(specs, hidden, strict=True):
            blocks.append(InvertedResidual(a, b, stride, h, expand))
        blocks.append(conv_bn(c_in, last, 1, 1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


@register_model("mobilenet_v2")
def mobilenet_v2(
    width_mult: float = 1.0,
    num_classes: int = 1000,
    small_input: bool = False,
    in_channels: int = 3,
) -> MobileNetV2:
    return MobileNetV2(width_mult, num_classes, small_input, in_channels)
