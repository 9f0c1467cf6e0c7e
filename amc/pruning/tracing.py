"""Find a network's coupled channel groups by tracing it with torch-pruning's DependencyGraph.

The graph is used once per model, only to learn *which* tensors index the same channels and at which
positions (residual adds, concatenations, depthwise convs, SE blocks, flatten → Linear). Slicing and
least squares are ours (``amc.pruning.slicing``, ``amc.pruning.reconstruction``): re-tracing per strategy costs
≈ 1.0 s against ≈ 0.03 s for our slicing, and the library's pruned modules cannot be saved with
``weights_only=True`` (``../shared/reference/any-model.md``).

Each raw group is a list of :class:`TensorUse`: one state_dict tensor, the dimension its channels
run along, and for each position there the group channel it carries.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn as nn

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class TensorUse:
    """Positions ``positions`` along ``dim`` of state_dict tensor ``key`` carry group channels ``roots``."""

    key: str
    dim: int
    positions: tuple[int, ...]
    roots: tuple[int, ...]


@dataclass(frozen=True)
class ModuleUse:
    """How one module sees a group: ``role`` is ``out`` (it writes the channels) or ``in`` (it reads them)."""

    name: str
    role: str
    kind: str  # dense (Conv2d groups=1 / Linear) | depthwise | norm | param


@dataclass
class RawGroup:
    channels: int
    modules: list[ModuleUse]
    tensors: list[TensorUse]
    root: str = "?"  # the layer the tracer grew the group from (names it when no dense layer writes it)
    problem: str | None = None  # why the group must stay fixed, if it must


def is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def module_kind(m: nn.Module) -> str | None:
    """Our name for a module type we can slice, or ``None`` for one we cannot."""
    if isinstance(m, nn.Conv2d) and not m.transposed:
        if m.groups == 1:
            return "dense"
        return "depthwise" if is_depthwise(m) else None
    if isinstance(m, nn.Linear):
        return "dense"
    if isinstance(m, BATCHNORMS):
        return "norm"
    if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
        return "norm"
    if not any(True for _ in m.parameters(recurse=False)) and not any(True for _ in m.buffers(recurse=False)):
        return "stateless"
    return None


def _tensor_uses(name: str, m: nn.Module, kind: str, role: str, pos: list[int], roots: list[int]) -> list[TensorUse]:
    prefix = f"{name}." if name else ""
    p, r = tuple(pos), tuple(roots)
    if kind == "dense":
        if role == "in":
            return [TensorUse(prefix + "weight", 1, p, r)]
        uses = [TensorUse(prefix + "weight", 0, p, r)]
        return uses + ([TensorUse(prefix + "bias", 0, p, r)] if m.bias is not None else [])
    if kind in ("depthwise", "norm"):
        keys = [k for k, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)] if t.dim() >= 1]
        return [TensorUse(prefix + k, 0, p, r) for k in keys]
    return []


def trace_groups(model: nn.Module, example: torch.Tensor) -> list[RawGroup]:
    """Every coupled channel group of ``model`` (output groups of the final layer excluded)."""
    from amc.runtime.imports import import_torch_pruning

    tp = import_torch_pruning()

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning's notes on unwrapped parameters; we handle them below
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
            groups = list(graph.get_all_groups())
    finally:
        model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    param_names = dict(graph._param_to_name)
    param_dims = {id(u.parameters): u.pruning_dim for u in graph.unwrapped_parameters}
    out: list[RawGroup] = []
    for group in groups:
        root = group[0].dep.target.module
        channels = len(group[0].idxs)
        raw = RawGroup(channels, [], [])
        seen: set[tuple[str, str]] = set()
        for item in group.items:
            target = item.dep.target.module
            role = "out" if graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
            pos, roots = list(item.idxs), list(item.root_idxs)
            if isinstance(target, nn.Parameter):
                name = param_names.get(target)
                dim = param_dims.get(id(target))
                if name is None or dim is None:
                    raw.problem = raw.problem or "an unnamed parameter"
                    continue
                raw.modules.append(ModuleUse(name, role, "param"))
                raw.tensors.append(TensorUse(name, dim, tuple(pos), tuple(roots)))
                continue
            name = names.get(target)
            if name is None:  # torch-pruning's own op nodes (add, cat, reshape): no tensors of their own
                continue
            kind = module_kind(target)
            if kind is None:
                raw.problem = raw.problem or f"{name} ({type(target).__name__}) cannot be sliced"
                continue
            if kind == "stateless" or (kind == "depthwise" and role == "in") or (name, role) in seen:
                continue
            seen.add((name, role))
            raw.modules.append(ModuleUse(name, role, kind))
            raw.tensors.extend(_tensor_uses(name, target, kind, role, pos, roots))
        raw.problem = raw.problem or _mapping_problem(raw)
        raw.root = names.get(root, "?")
        out.append(raw)
    return out


def _mapping_problem(raw: RawGroup) -> str | None:
    """Each group channel must map to the same number of positions in a tensor (flatten → Linear: H·W)."""
    for use in raw.tensors:
        counts = Counter(use.roots)
        if len(counts) != raw.channels or len(set(counts.values())) != 1:
            return f"{use.key} sees the channels unevenly"
    return None
