"""Reuse the evaluation work a strategy leaves unchanged: search-val activations cached by strategy prefix.

A converging agent keeps proposing the same widths for the early, high-resolution layers, which is where
most of the evaluation time goes. The activations after trunk stage ``i`` depend only on the decision points
whose layers (producers, pass-through, consumers) lie in stages ``0..i``, so a strategy that agrees with an
earlier one on those points can start from the stored activations. The result is bit-identical to a full
evaluation: same batches, same modules, same kernels.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from amc.structure import PrunableStructure

Tail = Callable[[nn.Module, torch.Tensor], torch.Tensor]

# Each family's forward as trunk stages + tail. "name.*" expands a Sequential into one stage per child.
TRUNKS: dict[str, tuple[tuple[str, ...], Tail]] = {
    "mobilenet_v1": (("conv1", "features.*"), lambda m, h: m.classifier(h.mean((2, 3)))),
    "mobilenet_v2": (("features.*",), lambda m, h: m.classifier(h.mean((2, 3)))),
    "hw7_student": (("cnn.*",), lambda m, h: m.fc(h.flatten(1))),
    "resnet18": (
        ("conv1", "bn1", "relu", "maxpool", "layer1.*", "layer2.*", "layer3.*", "layer4.*"),
        lambda m, h: m.fc(torch.flatten(m.avgpool(h), 1)),
    ),
}


def trunk_stages(model: nn.Module, family: str) -> list[str] | None:
    """Module names of the trunk stages, in forward order (``None``: family not split into stages)."""
    if family not in TRUNKS:
        return None
    names: list[str] = []
    for entry in TRUNKS[family][0]:
        if entry.endswith(".*"):
            parent = entry[:-2]
            names += [f"{parent}.{child}" for child, _ in model.get_submodule(parent).named_children()]
        else:
            names.append(entry)
    return names


def _inside(module_name: str, stage: str) -> bool:
    return module_name == stage or module_name.startswith(stage + ".")


class PrefixCache:
    """LRU store of per-batch activations after one trunk stage, keyed by the channels that shaped them.

    Only prefixes seen at least twice are stored (a random strategy's prefix rarely returns), the deepest
    such stage first (it saves the most work). ``budget_bytes`` bounds the memory held, including an entry
    being filled: room is made before its batches are computed.
    """

    def __init__(self, model: nn.Module, structure: PrunableStructure, budget_bytes: int) -> None:
        names = trunk_stages(model, structure.arch_name)
        if names is None:
            raise ValueError(f"no trunk split for {structure.arch_name!r}")
        self.stages = names
        self.tail = TRUNKS[structure.arch_name][1]
        # The decision points whose widths the output of stage i depends on: all touched by stages 0..i.
        touched: set[int] = set()
        self.points_upto: list[tuple[int, ...]] = []
        for stage in names:
            for j, p in enumerate(structure.points):
                if any(_inside(m, stage) for m in p.producers + p.passthrough + p.consumers):
                    touched.add(j)
            self.points_upto.append(tuple(sorted(touched)))
        self.budget_bytes = budget_bytes
        self.entries: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()
        self.seen: Counter[tuple] = Counter()
        self.held_bytes = 0

    def keys(self, channels: Sequence[int]) -> list[tuple]:
        return [(i, tuple(int(channels[j]) for j in pts)) for i, pts in enumerate(self.points_upto)]

    @torch.inference_mode()
    def matches_forward(self, model: nn.Module, x: torch.Tensor) -> bool:
        """Whether stages + tail reproduce ``model(x)`` (guards against a forward() this split does not know)."""
        h = x
        for name in self.stages:
            h = model.get_submodule(name)(h)
        return torch.allclose(self.tail(model, h), model(x), rtol=1e-4, atol=1e-5)

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
        stages = [net.get_submodule(name) for name in self.stages[start:]]
        batches = range(0, len(images), batch_size)
        kept: list[torch.Tensor] | None = [] if store_at is not None else None
        outputs = []
        for b, i in enumerate(batches):
            h = self.entries[reading][b] if reading else images[i : i + batch_size]
            for index, stage in enumerate(stages, start):
                h = stage(h)
                if kept is not None and index == store_at:
                    kept.append(h)
                    if b == 0 and not self._reserve(h, len(batches), keep=reading):
                        kept = None
            outputs.append(self.tail(net, h))
        if kept is not None:
            self.entries[keys[store_at]] = kept
            self.held_bytes += _nbytes(kept)
        return torch.cat(outputs), start

    def _reserve(self, batch: torch.Tensor, batches: int, keep: tuple | None) -> bool:
        """Make room for ``batches`` batches shaped like ``batch`` before computing them, evicting the least
        recently used entries (never ``keep``, the one being read); ``False`` if it can never fit."""
        size = batch.numel() * batch.element_size() * batches
        keep_size = _nbytes(self.entries[keep]) if keep in self.entries else 0
        if size + keep_size > self.budget_bytes:
            return False
        for key in list(self.entries):
            if self.held_bytes + size <= self.budget_bytes:
                break
            if key != keep:
                self.held_bytes -= _nbytes(self.entries.pop(key))
        return True


def _nbytes(batches: list[torch.Tensor]) -> int:
    return sum(b.numel() * b.element_size() for b in batches)
