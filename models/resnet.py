"""torchvision's ResNet-18 (the HW7 teacher), with a CIFAR-style stem for small inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn as nn

from amc.models.registry import register_model

if TYPE_CHECKING:
    from torchvision.models.resnet import ResNet


@register_model("resnet18")
def resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
) -> ResNet:
    """ResNet-18; ``small_input`` swaps the 7×7/2 stem + max-pool for a 3×3/1 stem (CIFAR-style)."""
    # Imported here: torchvision pulls in torch._dynamo (+160 MiB RSS, 1.5 s), which MobileNet runs never need.
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3 or small_input:
        kernel, stride, pad = (3, 1, 1) if small_input else (7, 2, 3)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, pad, bias=False)
    if small_input:
        model.maxpool = nn.Identity()
    return model
