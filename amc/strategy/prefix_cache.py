"""Reuse the evaluation work a strategy leaves unchanged: search-val activations cached by strategy prefix.

A converging agent keeps proposing the same widths for the early, high-resolution layers, which is where
most of the evaluation time goes. The model's forward is traced once with ``torch.fx`` and cut into
stages wherever a single tensor carries everything forward; the activations after stage ``i`` depend only
on the decision points whose layers (producers, pass-through, consumers) run in stages ``0..i``, so a
strategy that agrees with an earlier one on those points can start from the stored activations. The
result is bit-identical to a full evaluation: same batches, same modules, same kernels, same order.

The staged forward also runs each conv → (folded BN) → activation chain as one kernel on CPU
(``amc.pruning.fusion``), with or without the cache.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn

from amc.pruning.staged_forward import StagedForward


class PrefixCache:
    """LRU store of search-val activations after one trunk stage, keyed by the channels that shaped them.

    Only prefixes seen at least twice are stored (a random strategy's prefix rarely returns), the deepest
    such stage first (it saves the most work). ``budget_bytes`` bounds the memory held, including an entry
    being filled: room is made before its batches are computed.
    """

    def __init__(self, staged: StagedForward, budget_bytes: int) -> None:
        self.staged = staged
        self.points_upto = staged.points_upto
        self.budget_bytes = budget_bytes
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # all images' activations after a stage
        self.seen: Counter[tuple] = Counter()
        self.held_bytes = 0

    def clear(self) -> None:
        self.entries.clear()
        self.held_bytes = 0

    def keys(self, channels: Sequence[int]) -> list[tuple]:
        return [(i, tuple(int(channels[j]) for j in pts)) for i, pts in enumerate(self.points_upto)]

    @torch.inference_mode()
    def logits(
        self, net: nn.Module, channels: Sequence[int], images: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, int]:
        """``net``'s logits on ``images`` (always the same tensor), starting from the deepest stored prefix
        of ``channels`` and storing a recurring one; also the number of stages skipped."""
        keys = self.keys(channels)
        self.seen.update(keys)
        reading = next((k for k in reversed(keys) if k in self.entries), None)
        start = reading[0] + 1 if reading else 0
        if reading:
            self.entries.move_to_end(reading)
        store_at = next((k[0] for k in reversed(keys[start:]) if self.seen[k] >= 2 and k not in self.entries), None)
        batches = range(0, len(images), batch_size)
        bound = self.staged.bind(net)
        storing = store_at is not None
        kept: torch.Tensor | None = None
        outputs = []
        for b, i in enumerate(batches):
            h = self.entries[reading][i : i + batch_size] if reading else images[i : i + batch_size]
            if storing:
                h = self.staged.run(net, h, start, store_at, bound)
                if b == 0:
                    kept = self._allocate(h, len(images), keep=reading)
                    storing = kept is not None
                if kept is not None:
                    kept[i : i + batch_size] = h
                outputs.append(self.staged.run(net, h, store_at + 1, None, bound))
            else:
                outputs.append(self.staged.run(net, h, start, None, bound))
        if kept is not None:
            self.entries[keys[store_at]] = kept
            self.held_bytes += _nbytes(kept)
        return torch.cat(outputs), start

    def _allocate(self, batch: torch.Tensor, count: int, keep: tuple | None) -> torch.Tensor | None:
        """Room for ``count`` activations shaped like ``batch``'s, made before they are computed by evicting the
        least recently used entries (never ``keep``, the one being read); ``None`` if it can never fit.

        One block per entry, not one tensor per batch: a block this large is mmapped by glibc and returned to the
        system when evicted, where per-batch tensors were interleaved with each episode's transient activations on
        the heap and kept it fragmented (lab notebook, "Memory, again").
        """
        size = batch[:1].numel() * batch.element_size() * count
        keep_size = _nbytes(self.entries[keep]) if keep in self.entries else 0
        if size + keep_size > self.budget_bytes:
            return None
        for key in list(self.entries):
            if self.held_bytes + size <= self.budget_bytes:
                break
            if key != keep:
                self.held_bytes -= _nbytes(self.entries.pop(key))
        nhwc = batch.dim() == 4 and batch.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if nhwc else torch.contiguous_format  # slices keep the layout kernels saw
        return torch.empty((count, *batch.shape[1:]), dtype=batch.dtype, device=batch.device, memory_format=layout)


def _nbytes(block: torch.Tensor) -> int:
    return block.numel() * block.element_size()
