"""The least-squares refit of one consumer on its kept input channels, and which consumers it can refit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from amc.pruning import linear_solve
from amc.pruning.reconstruction.rows import ConsumerStats, consumer_layers, input_columns, kernel_area
from amc.pruning.slicing import kept_positions
from amc.pruning.structure import PrunableStructure

RIDGE = 1e-6  # relative to the mean diagonal of XᵀX
DEFAULT_MAX_COLUMNS = 4608  # XᵀX of a 3×3 conv reading 512 channels: 170 MB in float64


def solve(stats: ConsumerStats, idx: torch.Tensor) -> torch.Tensor:
    """Least-squares weights ``[O, len(idx)·k²]`` on the kept channels."""
    cols = input_columns(idx.to(torch.long).cpu(), stats.kernel_area)
    gram = stats.gram.index_select(0, cols).index_select(1, cols)
    ridge = RIDGE * gram.diagonal().mean().clamp_min(1e-12)
    gram = gram + ridge * torch.eye(len(cols), dtype=gram.dtype)
    w = linear_solve.solve(gram, stats.cross.index_select(0, cols))
    return w.T.float()


def full_width_weight(layer: nn.Module, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Put solved weights back into the consumer's full-width weight, dropped inputs zeroed."""
    full = torch.zeros_like(layer.weight.detach().cpu())
    shape = (full.shape[0], len(idx), *full.shape[2:])
    full[:, idx.to(torch.long).cpu()] = w.reshape(shape)
    return full


def input_keep(structure: PrunableStructure, keep: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """For each consumer whose input loses channels: the input positions that stay."""
    consumers = {n for p in structure.points for n in p.consumers}
    return {
        name: idx
        for (key, dim), idx in kept_positions(structure, keep).items()
        if dim == 1 and (name := key.rsplit(".", 1)[0]) in consumers and key.endswith(".weight")
    }


def solvable(layer: nn.Module, max_columns: int) -> str | None:
    """Why least squares leaves ``layer`` sliced, or ``None`` if it refits it."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return "grouped conv"
    columns = layer.weight.shape[1] * kernel_area(layer)
    if columns > max_columns:
        return f"{columns} input columns > lsq_max_columns={max_columns}"
    return None


def unreconstructed(model: nn.Module, structure: PrunableStructure, max_columns: int = DEFAULT_MAX_COLUMNS) -> dict:
    """Consumers least squares leaves sliced, with the reason (for export summaries)."""
    return {n: why for n, m in consumer_layers(model, structure).items() if (why := solvable(m, max_columns))}
