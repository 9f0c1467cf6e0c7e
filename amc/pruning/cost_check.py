"""The cost model checked against torch's own FLOP counter before a network is searched.

The structure predicts the MACs of any channel choice from its convs and linear layers. A network with other
costly operations (the matmuls inside attention, say) would be reported under budget when it is not, so it is
refused in one line, unless its predicted MACs equal ``FlopCounterMode``'s count, in full and pruned.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from amc.errors import ConfigError
from amc.pruning.slicing import slice_model
from amc.pruning.structure import PrunableStructure


def counted_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """MACs per image as torch's FlopCounterMode counts them (FLOPs / 2): convs, matmuls, attention."""
    param = next(model.parameters(), None)
    x = torch.zeros(input_size, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    was, fast = model.training, torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused kernel hides its matmuls
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was)
        torch.backends.mha.set_fastpath_enabled(fast)
    return counter.get_total_flops() // 2 // input_size[0]


def refuse_unpredictable_costs(model: nn.Module, structure: PrunableStructure) -> None:
    """One error line if the structure's MACs differ from FlopCounterMode's, for the network in full or with
    every decision point halved (the cost it would report for a searched network would then be wrong)."""
    half = [max(1, w // 2) for w in structure.widths]
    keep = [torch.arange(c) for c in half]
    for label, net, channels in (
        ("in full", model, list(structure.widths)),
        ("with every decision point halved", slice_model(model, structure, keep), half),
    ):
        predicted, counted = structure.macs(channels), counted_macs(net, structure.input_size)
        if predicted != counted:
            raise ConfigError(
                f"{structure.arch_name}: amc's cost model predicts {predicted:,} MACs {label}, torch's FlopCounterMode "
                f"counts {counted:,}: the network has costly operations the model does not price (e.g. the "
                "matmuls of attention), so a budget could not be met exactly; it is not searched"
            )
