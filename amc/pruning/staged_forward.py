"""A model's forward, traced once with torch.fx and cut into stages that can start from a stored activation.

A cut is a node after which only its own value is still needed, so the activations after a cut carry
everything the rest of the forward reads. The prefix cache (``amc.strategy.prefix_cache``) stores search-val
activations at cuts; the closed-loop reconstruction (``amc.pruning.reconstruction``) stores calibration
activations at cuts so that each consumer's refit runs only the stages since the last one.

A run can also execute each conv → (folded BN) → activation chain as one kernel on CPU (``amc.pruning.fusion``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn

from amc.errors import ConfigError
from amc.pruning.fusion import ConvActivation, can_fuse, conv_activation_chains, fused_conv_activation
from amc.pruning.graph import symbolic_trace
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
        self.nodes = list(symbolic_trace(model).graph.nodes)
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
