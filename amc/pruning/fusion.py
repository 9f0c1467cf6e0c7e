"""Inference-only speed-ups for evaluating many pruned networks: BN folding, conv + activation in one kernel."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv whose output equals ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Fold every Conv2d→BatchNorm2d pair that sits side by side in an ``nn.Sequential`` (in place, eval only)."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fold_conv_bn(conv, bn)
                module[i + 1] = nn.Identity()
    return model.eval()


# Conv + activation in one oneDNN kernel, for the scorer's CPU evaluation of pruned networks. In eager PyTorch
# the activation is a second pass over the conv's output; fused, it is applied while the output is still in
# registers. Measured on FMNIST-MBV1 (2-core AVX512-BF16 CPU, bf16, batch 125): the activations were 12 % of an
# episode's evaluation; the fused kernel's output is bit-identical to conv then activation (tests/pruning).
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
