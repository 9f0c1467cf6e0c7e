"""MobileNetV1 with the reference implementation's state_dict layout.

Keys: ``conv1.{0,1}`` (stem), ``features.{i}.{0,1,3,4}`` (depthwise, BN, pointwise, BN),
``classifier.0`` (fc). Each block is its own ``nn.Sequential`` so pruning can grab layers by index.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from amc.models.registry import ModelConfigError, register_model

BlockSpec = int | Sequence[int]

PROFILES: dict[str, tuple[int, list[BlockSpec]]] = {
    "normal": (32, [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]),
    # Found by AMC at "50 % FLOPs" (really 51.7 % of the MACs, see docs).
    "0.5flops": (24, [48, (96, 2), 80, (192, 2), 200, (328, 2), 352, 368, 360, 328, 400, (736, 2), 752]),
}


def _split(spec: BlockSpec) -> tuple[int, int]:
    if isinstance(spec, int):
        return spec, 1
    out, stride = spec
    return int(out), int(stride)


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def depthwise_separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1; ``cfg`` entries are ``out`` or ``(out, stride)``."""

    def __init__(
        self,
        cfg: Sequence[BlockSpec],
        in_planes: int = 32,
        in_channels: int = 3,
        num_classes: int = 1000,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, in_planes, 1 if small_input else 2)
        blocks, c = [], in_planes
        for spec in cfg:
            out, stride = _split(spec)
            blocks.append(depthwise_separable(c, out, stride))
            c = out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.conv1(x))
        return self.classifier(x.mean((2, 3)))


def _scale(c: int, width_mult: float) -> int:
    return max(1, int(c * width_mult))


@register_model("mobilenet_v1")
def mobilenet_v1(
    profile: str = "normal",
    cfg: Sequence[BlockSpec] | None = None,
    in_planes: int | None = None,
    width_mult: float = 1.0,
    in_channels: int = 3,
    num_classes: int = 1000,
    small_input: bool = False,
) -> MobileNetV1:
    """MobileNetV1 from a named ``profile`` or an explicit ``cfg`` (which wins)."""
    if profile not in PROFILES:
        raise ModelConfigError(f"unknown mobilenet_v1 profile {profile!r}; known: {', '.join(PROFILES)}")
    default_planes, default_cfg = PROFILES[profile]
    cfg = default_cfg if cfg is None else cfg
    in_planes = default_planes if in_planes is None else in_planes
    scaled = [(_scale(_split(s)[0], width_mult), _split(s)[1]) for s in cfg]
    return MobileNetV1(scaled, _scale(in_planes, width_mult), in_channels, num_classes, small_input)
