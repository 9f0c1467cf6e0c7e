"""AMC's open-loop reconstruction: the calibration statistics of the original network, computed once per search,
and every strategy a small solve on a sub-block of them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from amc.pruning.reconstruction.refit import DEFAULT_MAX_COLUMNS, full_width_weight, input_keep, solvable, solve
from amc.pruning.reconstruction.rows import collect_stats, consumer_layers, images_for_rows, well_posed
from amc.pruning.structure import PrunableStructure

SOLVED_MEMORY_MB = 64  # FMNIST-MBV1's largest consumer weight is 4 MiB


class _BoundedStore:
    """Least recently used tensors by key, at most ``budget_bytes`` of them."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes, self.held_bytes = budget_bytes, 0
        self.entries: OrderedDict[object, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: object) -> torch.Tensor | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return value

    def put(self, key: object, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.budget_bytes:
            return
        while self.held_bytes + size > self.budget_bytes:
            _, old = self.entries.popitem(last=False)
            self.held_bytes -= old.numel() * old.element_size()
        self.entries[key] = value
        self.held_bytes += size


class OpenLoopReconstructor:
    """AMC's reconstruction with the calibration statistics computed once for a whole search.

    Every dense consumer of a decision point is refit on its own output, so a residual stream with four
    readers gets four solves. A consumer too large for its XᵀX (``max_columns``) stays sliced; ``skipped``
    says which.
    """

    def __init__(
        self,
        model: nn.Module,
        structure: PrunableStructure,
        images: torch.Tensor,
        points_per_image: int = 10,
        seed: int = 0,
        batch_size: int = 250,
        max_columns: int = DEFAULT_MAX_COLUMNS,
        more_images: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        """:param more_images: ``count`` → that many calibration images; consumers the ``images`` leave
        underdetermined (fewer than ``MIN_ROWS_PER_COLUMN`` rows per column) are refit on enough of them."""
        layers = consumer_layers(model, structure)
        self.skipped = {n: why for n, m in layers.items() if (why := solvable(m, max_columns))}
        self.consumers = {n: m for n, m in layers.items() if n not in self.skipped}
        self.stats = collect_stats(model, self.consumers, images, points_per_image, seed, batch_size)
        self.structure = structure
        # A consumer's open-loop solve depends only on its kept inputs, and a search keeps proposing the same
        # counts for most layers (a prefix of a fixed ranking): solved weights are reused, not solved again.
        self.solved = _BoundedStore(SOLVED_MEMORY_MB * 2**20)
        thin = {n: images_for_rows(s, len(images)) for n, s in self.stats.items() if not well_posed(s)}
        if thin and more_images is not None:
            extra = more_images(max(thin.values()))
            more = {n: self.consumers[n] for n in thin}
            self.stats.update(collect_stats(model, more, extra, points_per_image, seed, batch_size))

    def overrides(self, keep: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reconstructed full-width consumer weights for the kept channels of every decision point.

        The returned tensors may be handed out again for the same kept channels: callers must not change them
        (slicing copies them).
        """
        out = {}
        for name, idx in input_keep(self.structure, keep).items():
            layer = self.consumers.get(name)
            if layer is None or len(idx) == layer.weight.shape[1]:
                continue
            key = (name, idx.to(torch.long).cpu().numpy().tobytes())
            weight = self.solved.get(key)
            if weight is None:
                weight = full_width_weight(layer, idx, solve(self.stats[name], idx))
                self.solved.put(key, weight)
            out[name] = weight
        return out
