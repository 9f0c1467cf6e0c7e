"""Closed-loop reconstruction (for the export): consumers refit one at a time in forward order, X taken from the
network pruned so far."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

from amc.pruning.reconstruction.refit import DEFAULT_MAX_COLUMNS, full_width_weight, input_keep, solvable, solve
from amc.pruning.reconstruction.rows import ConsumerStats, RowCapture, batches, collect_stats, consumer_layers
from amc.pruning.staged_forward import StagedForward, staged_forward
from amc.pruning.structure import PrunableStructure

# Closed loop keeps both networks' calibration activations at the last cut reached, so each consumer's refit runs
# only the stages since then: FMNIST-MBV1's 14 refits went from ≈ 146 s to ≈ 50 s (experiments/notes/lab-notebook.md).
CLOSED_LOOP_MEMORY_MB = 256


def closed_loop_overrides(
    model: nn.Module,
    structure: PrunableStructure,
    keep: Sequence[torch.Tensor],
    images: torch.Tensor,
    points_per_image: int = 10,
    seed: int = 0,
    batch_size: int = 250,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    memory_mb: float = CLOSED_LOOP_MEMORY_MB,
) -> dict[str, torch.Tensor]:
    """Reconstruct consumers one at a time in forward order, X taken from the network pruned so far.

    The network pruned so far is a copy of ``model`` whose consumers read zeros for the dropped channels (as the
    sliced network reads nothing), refit one by one. Where the forward traces into stages, the walk from one
    consumer to the next starts from stored activations of both networks (``memory_mb`` for both together);
    otherwise every refit runs both networks from the input. Both give the same weights.
    """
    model.eval()
    work = copy.deepcopy(model)
    work_modules = dict(work.named_modules())
    layers = consumer_layers(model, structure)
    kept = input_keep(structure, keep)
    dropping = {n: kept[n] for n, layer in layers.items() if n in kept and len(kept[n]) < layer.weight.shape[1]}
    with torch.no_grad():
        for name, idx in dropping.items():
            if not _grouped(layers[name]):  # the sliced network reads nothing from the dropped channels
                _zero_inputs(work_modules[name].weight, idx)
    refit = [n for n in layers if n in dropping and not solvable(layers[n], max_columns)]
    walk = _StagedWalk.for_consumers(model, work, structure, refit, images, batch_size, memory_mb)
    out = {}
    # the export's longest silent step otherwise (≈ 50 s on FMNIST-MBV1, far more on ImageNet-sized inputs)
    bar = tqdm(refit, desc="closed-loop least squares (layers)", leave=False, dynamic_ncols=True, disable=not refit)
    for i, name in enumerate(bar):
        layer = layers[name]
        if walk is not None:
            stats = walk.collect(name, layer, points_per_image, seed)
        else:
            stats = collect_stats(model, {name: layer}, images, points_per_image, seed, batch_size, source=work)[name]
        w = full_width_weight(layer, dropping[name], solve(stats, dropping[name]))
        with torch.no_grad():
            work_modules[name].weight.copy_(w.to(work_modules[name].weight.device))
        out[name] = w
        if walk is not None and i + 1 < len(refit):
            walk.advance(before=refit[i + 1])
    return out


def _grouped(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups != 1


def _zero_inputs(weight: torch.Tensor, idx: torch.Tensor) -> None:
    mask = torch.zeros(weight.shape[1], dtype=torch.bool, device=weight.device)
    mask[idx.to(weight.device)] = True
    weight[:, ~mask] = 0


class _StagedWalk:
    """The calibration images' activations in the base and in the network pruned so far, at the deepest cut of the
    staged forward reached so far, batch by batch: each refit runs from there, not from the input.

    Bit-identical to running each network from the input: the same batches through the same modules in the
    same order. A cut whose activations (both networks) exceed ``memory_bytes`` is not stored; the walk then
    keeps starting from the last one that fit.
    """

    def __init__(
        self,
        staged: StagedForward,
        model: nn.Module,
        work: nn.Module,
        images: torch.Tensor,
        batch_size: int,
        memory_bytes: int,
        node_of: dict[str, int],
    ) -> None:
        self.staged, self.model, self.work, self.node_of = staged, model, work, node_of
        self.bound = {id(model): staged.bind(model), id(work): staged.bind(work)}
        self.device = next(model.parameters()).device
        self.base = list(batches(images, batch_size))  # views of the images until the first cut: no copy
        self.pruned = list(self.base)
        self.stage = 0  # the stored values enter stage ``stage`` (0: they are the images)
        with torch.inference_mode():
            probe, self.cut_bytes = images[:1].to(self.device), []
            for k in range(len(staged.cuts)):
                probe = staged.run(model, probe, k, k, self.bound[id(model)])
                self.cut_bytes.append(2 * probe.numel() * probe.element_size() * len(images))
        self.memory_bytes = memory_bytes

    @classmethod
    def for_consumers(
        cls,
        model: nn.Module,
        work: nn.Module,
        structure: PrunableStructure,
        consumers: list[str],
        images: torch.Tensor,
        batch_size: int,
        memory_mb: float,
    ) -> _StagedWalk | None:
        """A walk for these consumers, or ``None`` where it cannot help or cannot tell where they run (forward not
        traceable, a consumer called more or less than once, no budget)."""
        if memory_mb <= 0 or len(consumers) < 2:
            return None
        staged = staged_forward(model, structure, fuse=False)  # hooks see every module call
        if staged is None or not staged.cuts:
            return None
        calls = Counter(str(n.target) for n in staged.nodes if n.op == "call_module")
        if any(calls[name] != 1 for name in consumers):
            return None
        node_of = {str(n.target): i for i, n in enumerate(staged.nodes) if n.op == "call_module"}
        return cls(staged, model, work, images, batch_size, int(memory_mb * 2**20), node_of)

    def _run(self, net: nn.Module, h: torch.Tensor, stop: int | None) -> torch.Tensor:
        return self.staged.run(net, h.to(self.device), self.stage, stop, self.bound[id(net)])

    def _stop(self, name: str) -> int | None:
        """The first cut at or after ``name``'s call (``None``: the output)."""
        return next((k for k, cut in enumerate(self.staged.cuts) if cut >= self.node_of[name]), None)

    @torch.inference_mode()
    def collect(self, name: str, layer: nn.Module, points: int, seed: int) -> ConsumerStats:
        """``name``'s closed-loop XᵀX and XᵀY: Y from the base, X from the network pruned so far."""
        stop = self._stop(name)
        stats: dict[str, ConsumerStats] = {}
        with RowCapture(self.model, {name: layer}, points, seed, source=self.work) as capture:
            for batch_no, (h_base, h_pruned) in enumerate(zip(self.base, self.pruned, strict=True)):
                capture.begin(batch_no)
                for net, h in ((self.model, h_base), (self.work, h_pruned)):
                    capture.run(net, lambda net=net, h=h: self._run(net, h, stop))
                capture.accumulate(stats)
        return stats[name]

    @torch.inference_mode()
    def advance(self, before: str) -> None:
        """Move the stored activations to the deepest cut that runs before consumer ``before`` and fits."""
        cuts = [k for k, cut in enumerate(self.staged.cuts) if k >= self.stage and cut < self.node_of[before]]
        target = next((k for k in reversed(cuts) if self.cut_bytes[k] <= self.memory_bytes), None)
        if target is None:
            return
        for values, net in ((self.base, self.model), (self.pruned, self.work)):
            for b, h in enumerate(values):  # in place: a batch's old activations are freed as it moves on
                values[b] = self._run(net, h, target)
        self.stage = target + 1
