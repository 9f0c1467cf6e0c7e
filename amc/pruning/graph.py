"""The one way amc traces a network's forward with torch.fx (the staged forward, BN folding, conv fusion)."""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

# Norm layers stay whole in the graph: a subclass from a model zoo (timm's LayerNorm2d) reads its own sizes in its
# forward, which tracing into it would freeze as constants that a pruned copy's smaller layers then contradict.
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, NORMS) or super().is_leaf_module(m, module_qualified_name)


def symbolic_trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with every norm layer a leaf (called as a module, never traced into)."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)
