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
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn

from amc.errors import ConfigError
from amc.pruning.fusion import ConvActivation, can_fuse, conv_activation_chains, fused_conv_activation
from amc.pruning.structure import PrunableStructure


@dataclass
class BoundNet:
    """One network's modules for a staged run, and which of its convs run fused with their activation."""

    modules: dict[str, nn.Module]
    fused: dict[int, ConvActivation] = field(default_factory=dict)  # by the conv's node index
    passthrough: set[int] = field(default_factory=set)  # activations a fused conv already applied


class StagedForward:
    """A model's forward, traced once, as stages that can start from a stored activation.

    A cut is a node after which only its own value is still needed; of consecutive cuts that depend on
    the same decision points, the deepest is kept (it saves the most work).
    """

    def __init__(self, model: nn.Module, structure: PrunableStructure, fuse: bool = True) -> None:
        self.nodes = list(fx.symbolic_trace(model).graph.nodes)
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ConfigError("the model's forward takes more than one input; amc prunes single-input classifiers")
        last_use = {n: i for i, n in enumerate(self.nodes)}
        for i, n in enumerate(self.nodes):
            for a in n.all_input_nodes:
                last_use[a] = i
        self.last_use = last_use
        point_of: dict[str, set[int]] = {}
        for j, p in enumerate(structure.points):
            for name in p.producers + p.passthrough + p.consumers:
                point_of.setdefault(name, set()).add(j)
            for use in p.tensors:  # loose parameters read with get_attr
                point_of.setdefault(use.key, set()).add(j)
        touched: set[int] = set()
        cuts: list[tuple[int, tuple[int, ...]]] = []
        live: set = set()
        for i, n in enumerate(self.nodes):
            if n.op in ("call_module", "get_attr"):
                touched |= point_of.get(str(n.target), set())
            live = {v for v in live | {n} if last_use.get(v, -1) > i}
            if n.op not in ("placeholder", "output", "get_attr") and live == {n}:
                key = tuple(sorted(touched))
                if cuts and cuts[-1][1] == key:
                    cuts[-1] = (i, key)
                else:
                    cuts.append((i, key))
        if cuts and self.nodes[-1].op == "output" and cuts[-1][0] >= len(self.nodes) - 2:
            cuts.pop()  # a cut right before the output saves nothing
        self.cuts = [i for i, _ in cuts]
        self.points_upto = [key for _, key in cuts]
        chains = conv_activation_chains(self.nodes, dict(model.named_modules())) if fuse else []
        # a chain split by a cut would store the conv's output where the cache expects the activation's
        self.chains = [c for c in chains if not any(c.conv <= cut < c.activation for cut in self.cuts)]

    def bind(self, net: nn.Module) -> BoundNet:
        """``net``'s modules, fusing each conv → activation chain whose BatchNorms are folded (``nn.Identity``)
        and whose conv oneDNN can run with its activation."""
        bound = BoundNet(dict(net.named_modules()))
        for chain in self.chains:
            conv = bound.modules.get(str(self.nodes[chain.conv].target))
            folded = all(isinstance(bound.modules.get(str(self.nodes[i].target)), nn.Identity) for i in chain.between)
            if folded and conv is not None and can_fuse(conv):
                bound.fused[chain.conv] = chain
                bound.passthrough.add(chain.activation)
        return bound

    def run(
        self,
        net: nn.Module,
        value: torch.Tensor,
        start: int,
        stop: int | None,
        bound: BoundNet | None = None,
    ) -> torch.Tensor:
        """Run from after cut ``start - 1`` (``start`` 0: from the input) to cut ``stop`` (``None``: the output).

        :param bound: ``self.bind(net)``, made once per network (it costs a walk over the modules).
        """
        first = 0 if start == 0 else self.cuts[start - 1] + 1
        last = len(self.nodes) - 1 if stop is None else self.cuts[stop]
        env: dict[fx.Node, object] = {}
        if start == 0:
            env[self.nodes[0]] = value
            first = 1
        else:
            env[self.nodes[self.cuts[start - 1]]] = value
        bound = bound if bound is not None else self.bind(net)
        modules = bound.modules
        for i in range(first, last + 1):
            node = self.nodes[i]
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if i in bound.passthrough:  # the conv before applied it
                out = env[node.all_input_nodes[0]]
            elif i in bound.fused:
                chain = bound.fused[i]
                out = fused_conv_activation(modules[node.target], args[0], chain.attr, chain.scalars)
            elif node.op == "call_module":
                out = modules[node.target](*args, **kwargs)
            elif node.op == "call_function":
                out = node.target(*args, **kwargs)
            elif node.op == "call_method":
                out = getattr(args[0], node.target)(*args[1:], **kwargs)
            elif node.op == "get_attr":
                out = _attr(net, node.target)
            elif node.op == "output":
                return args[0]
            else:
                out = value
            env[node] = out
            for a in node.all_input_nodes:  # free what nothing later reads
                if self.last_use.get(a, -1) <= i and a is not node:
                    env.pop(a, None)
        return env[self.nodes[last]]

    @torch.inference_mode()
    def matches_forward(self, net: nn.Module, x: torch.Tensor) -> bool:
        """Whether the stages, whole and split at the first and last cut, reproduce ``net(x)`` (guards against a
        forward() this split does not know, and checks the fused kernels on ``net``)."""
        expected = net(x)
        bound = self.bind(net)
        ends = sorted({0, len(self.cuts) - 1}) if self.cuts else []
        split = [self.run(net, self.run(net, x, 0, k, bound), k + 1, None, bound) for k in ends]
        outputs = [self.run(net, x, 0, None, bound), *split]
        return all(torch.allclose(out, expected, rtol=1e-4, atol=1e-5) for out in outputs)


def _attr(net: nn.Module, target: str):
    obj = net
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def staged_forward(model: nn.Module, structure: PrunableStructure, fuse: bool = True) -> StagedForward | None:
    """The model's staged forward, or ``None`` where torch.fx cannot trace it (no prefix cache then)."""
    try:
        return StagedForward(model, structure, fuse)
    except Exception:  # fx's limits (data-dependent control flow): evaluate in full instead
        return None


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
        the heap and kept it fragmented (+≈ 290 MiB of free heap RSS after 40 strategies on FMNIST-MBV1).
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
