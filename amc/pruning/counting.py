"""The cost model every budget is measured with.

Convention (the MobileNet papers' "Mult-Adds", fvcore without its BN handle):
**MACs** = multiply-accumulates of Conv2d (Cout·Ho·Wo·Cin/groups·kh·kw) and Linear (in·out),
bias, BN, activations and pooling excluded, per image; **FLOPs = 2 × MACs**.
**Params** = every trainable parameter, BN affine included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn


@dataclass(frozen=True)
class LayerCost:
    """One Conv2d/Linear layer's cost per image."""

    name: str
    kind: str
    macs: int
    params: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


@dataclass
class CostReport:
    """Per-image totals (``macs``, ``params``) and one row per Conv2d/Linear layer; ``str()`` is the table."""

    macs: int
    params: int
    layers: list[LayerCost] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def __str__(self) -> str:
        return self.table()

    def table(self) -> str:
        head = f"{'layer':<28} {'type':<10} {'output':<18} {'MACs':>14} {'params':>11}"
        rows = [head, "-" * len(head)]
        for r in self.layers:
            shape = "x".join(map(str, r.output_shape[1:]))
            rows.append(f"{r.name:<28} {r.kind:<10} {shape:<18} {r.macs:>14,} {r.params:>11,}")
        rows.append("-" * len(head))
        rows.append(f"{'total (per image)':<58} {self.macs:>14,} {self.params:>11,}")
        rows.append(
            f"MACs {self.macs / 1e6:,.3f} M = FLOPs {self.flops / 1e6:,.3f} M (FLOPs = 2 x MACs); "
            f"params {self.params:,}"
        )
        return "\n".join(rows)


def layer_macs(module: nn.Module, output_shape: torch.Size | tuple[int, ...]) -> int:
    """MACs of one Conv2d or Linear for one image, given its output shape (batch first)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        c_out, h, w = output_shape[1:]
        return c_out * h * w * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        positions = 1
        for d in output_shape[1:-1]:
            positions *= d
        return positions * module.in_features * module.out_features
    return 0


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def profile(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 224, 224)) -> CostReport:
    """Run one forward pass on zeros and count MACs per Conv2d/Linear (per image) and params."""
    rows: list[LayerCost] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        own = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(
            LayerCost(
                name=names[module],
                kind=type(module).__name__,
                macs=layer_macs(module, output.shape),
                params=own,
                input_shape=tuple(inputs[0].shape),
                output_shape=tuple(output.shape),
            )
        )

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return CostReport(sum(r.macs for r in rows), count_params(model), rows)
