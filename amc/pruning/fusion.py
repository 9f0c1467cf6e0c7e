"""Inference-only speed-ups for evaluating many pruned networks: BN folding, conv + activation in one kernel."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from amc.pruning.graph import symbolic_trace


def batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where a Conv2d's output feeds only a BatchNorm2d, found in the traced graph
    (torchvision's ResNet calls ``conv1`` then ``bn1`` in its forward, not side by side in an ``nn.Sequential``).
    A network ``torch.fx`` cannot trace falls back to the pairs that sit side by side in an ``nn.Sequential``."""
    modules = dict(model.named_modules())
    try:
        graph = symbolic_trace(model).graph
    except Exception:  # fx raises many kinds on data-dependent control flow: fall back, never fail a search
        return _sequential_pairs(model)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if not (isinstance(source, fx.Node) and source.op == "call_module"):
            continue
        if not isinstance(modules.get(source.target), nn.Conv2d) or len(source.users) != 1:
            continue
        if calls[source.target] == 1 and calls[node.target] == 1:  # a module called twice cannot be folded
            pairs.append((str(source.target), str(node.target)))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            names = [n for n, _ in module.named_children()]
            for first, second in itertools.pairwise(names):
                if isinstance(module.get_submodule(first), nn.Conv2d) and isinstance(
                    module.get_submodule(second), nn.BatchNorm2d
                ):
                    pairs.append((f"{prefix}.{first}".lstrip("."), f"{prefix}.{second}".lstrip(".")))
    return pairs


@torch.no_grad()
def fold_batchnorms(model: nn.Module, pairs: list[tuple[str, str]] | None = None) -> nn.Module:
    """Fold each BatchNorm into the conv before it (torch's ``fuse_conv_bn_eval``), in place, eval mode.

    :param pairs: from :func:`batchnorm_pairs` on this network or on one it was pruned from (module names are
        kept by pruning): a search traces its base once, not every pruned copy.
    """
    model.eval()
    for conv_name, bn_name in batchnorm_pairs(model) if pairs is None else pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            continue  # already folded
        model.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
        model.set_submodule(bn_name, nn.Identity())
    return model


# Conv + activation in one oneDNN kernel, for the scorer's CPU evaluation of pruned networks. In eager PyTorch
# the activation is a second pass over the conv's output; fused, it is applied while the output is still in
# registers (the time it saves: lab notebook, "Where an episode's time goes"); the fused kernel's output is
# bit-identical to conv then activation (tests/pruning).
_POST_OPS: dict[type[nn.Module] | object, tuple[str, list[float | None]]] = {
    nn.ReLU: ("relu", [None]),
    nn.ReLU6: ("hardtanh", [0.0, 6.0]),
    torch.relu: ("relu", [None]),
    torch.nn.functional.relu: ("relu", [None]),
    torch.nn.functional.relu6: ("hardtanh", [0.0, 6.0]),
    "relu": ("relu", [None]),  # x.relu()
}


def post_op_of(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, list[float | None]] | None:
    """The oneDNN post-op computing ``node``, where it is an activation oneDNN can fuse into a conv."""
    if node.op == "call_module":
        return _POST_OPS.get(type(modules.get(str(node.target))))
    if node.op == "call_function":
        return _POST_OPS.get(node.target)
    if node.op == "call_method" and len(node.args) == 1:
        return _POST_OPS.get(node.target)
    return None


@dataclass(frozen=True)
class ConvActivation:
    """An activation node fed, through nothing but (foldable) BatchNorms, by a conv's only use."""

    conv: int  # node indices in the traced graph
    between: tuple[int, ...]  # BatchNorm nodes: fusable once folded (nn.Identity in the evaluated net)
    activation: int
    attr: str
    scalars: tuple[float | None, ...]


def conv_activation_chains(nodes: list[fx.Node], modules: dict[str, nn.Module]) -> list[ConvActivation]:
    """Every conv → [BatchNorm …] → activation chain in which each value has exactly one use."""
    index = {n: i for i, n in enumerate(nodes)}
    chains = []
    for node in nodes:
        post_op = post_op_of(node, modules)
        if post_op is None or len(node.all_input_nodes) != 1:
            continue
        between: list[int] = []
        source = node.all_input_nodes[0]
        while len(source.users) == 1 and isinstance(_module(source, modules), nn.BatchNorm2d):
            between.insert(0, index[source])
            source = source.all_input_nodes[0]
        called_plainly = len(source.args) == 1 and not source.kwargs  # conv(x): the fused op takes only x
        if len(source.users) == 1 and called_plainly and type(_module(source, modules)) is nn.Conv2d:
            chains.append(ConvActivation(index[source], tuple(between), index[node], post_op[0], tuple(post_op[1])))
    return chains


def _module(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    return modules.get(str(node.target)) if node.op == "call_module" else None


@functools.cache
def _onednn_fusion_available() -> bool:
    """Whether this torch build has oneDNN and its fused conv op (asked once, not per conv and episode)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


@functools.cache
def _onednn_runs_bfloat16() -> bool:
    """Whether oneDNN has bfloat16 kernels on this CPU (AVX512-BW/VL/DQ or AVX-NE-CONVERT): without them its fused
    op refuses bfloat16, where plain PyTorch convs fall back to a slower path that still runs."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def can_fuse(conv: nn.Module) -> bool:
    """Whether ``conv`` can run as one oneDNN kernel with its activation (CPU, zero padding, float32, or bfloat16
    where oneDNN has kernels for it)."""
    dtype = conv.weight.dtype
    return (
        type(conv) is nn.Conv2d
        and conv.weight.device.type == "cpu"
        and (dtype == torch.float32 or (dtype == torch.bfloat16 and _onednn_runs_bfloat16()))
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and _onednn_fusion_available()
    )


def fused_conv_activation(conv: nn.Conv2d, x: torch.Tensor, attr: str, scalars: tuple[float | None, ...]):
    """``activation(conv(x))`` in one oneDNN kernel (the op torch.compile's CPU backend emits for this pattern)."""
    return torch.ops.mkldnn._convolution_pointwise(
        x,
        conv.weight,
        conv.bias,
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
        attr,
        list(scalars),
        "",
    )
