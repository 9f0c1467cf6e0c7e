"""torchvision's ResNet-18 (the HW7 teacher), optionally with pruned inner widths per basic block."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from models.registry import register_model

DEFAULT_INNER_WIDTHS = [64, 64, 128, 128, 256, 256, 512, 512]


def basic_blocks(model: ResNet) -> list[BasicBlock]:
    return [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]


def _set_inner_width(block: BasicBlock, width: int) -> None:
    """Give a basic block ``width`` channels between its two 3×3 convs (its residual is unchanged)."""
    c1, c2 = block.conv1, block.conv2
    block.conv1 = nn.Conv2d(c1.in_channels, width, 3, c1.stride, 1, bias=False)
    block.bn1 = nn.BatchNorm2d(width)
    block.conv2 = nn.Conv2d(width, c2.out_channels, 3, 1, 1, bias=False)


@register_model("resnet18")
def resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    inner_widths: Sequence[int] | None = None,
) -> ResNet:
    """ResNet-18; ``small_input`` swaps the 7×7/2 stem + max-pool for a 3×3/1 stem (CIFAR-style)."""
    model = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3 or small_input:
        kernel, stride, pad = (3, 1, 1) if small_input else (7, 2, 3)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, pad, bias=False)
    if small_input:
        model.maxpool = nn.Identity()
    if inner_widths is not None:
        blocks = basic_blocks(model)
        if len(inner_widths) != len(blocks):
            raise ValueError(f"inner_widths needs {len(blocks)} entries, got {len(inner_widths)}")
        for block, width in zip(blocks, inner_widths, strict=True):
            if width != block.conv1.out_channels:
                _set_inner_width(block, int(width))
    return model
