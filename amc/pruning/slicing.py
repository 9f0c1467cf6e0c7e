"""Channel selection and physical slicing of any analysed network into a smaller one.

Slicing works on tensors, not on families: each decision point says which positions of which
state_dict tensors carry its channels (``amc.pruning.structure``), so dropping channels is one
``index_select`` per tensor dimension, and the smaller network is a copy of the original whose
affected modules take the sliced tensors and their new sizes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

from amc.choices import Selection
from amc.errors import ConfigError
from amc.pruning.structure import DecisionPoint, PrunableStructure
from amc.pruning.tracing import is_depthwise

SELECTIONS = tuple(Selection)  # lsq: amc.pruning.lsq_ranking, from data


def channel_scores(
    model: nn.Module, point: DecisionPoint, method: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Importance of each channel of ``point`` (higher = keep).

    ``l1``/``l2``: norm of the consumers' weights on that input channel (AMC's criterion; several
    consumers, or several positions per channel, are summed); ``bn_gamma``: the signed BN scale, as
    HW7's slimming; ``random``: a control.
    """
    if method in ("l1", "l2"):
        p = 1 if method == "l1" else 2
        state = dict(model.state_dict())
        consumers = {f"{name}.weight" for name in point.consumers}
        score = torch.zeros(point.channels, dtype=torch.float64)
        for use in point.tensors:
            if use.key not in consumers or use.dim != 1:
                continue
            w = state[use.key].detach().float().cpu().index_select(1, torch.tensor(use.positions))
            norms = w.transpose(0, 1).reshape(len(use.positions), -1).norm(p=p, dim=1)
            score.index_add_(0, torch.tensor(use.roots), norms.double())
        return score.float()  # float32 norms survive the float64 sum exactly when one consumer reads them
    if method == "bn_gamma":
        if point.gamma_bn is None:
            raise ConfigError(f"decision point {point.name} has no BatchNorm to rank channels by")
        modules = dict(model.named_modules())
        return modules[point.gamma_bn].weight.detach().float().cpu().clone()
    if method == "random":
        return torch.rand(point.channels, generator=generator)
    if method == "lsq":
        raise ConfigError("selection=lsq ranks by calibration data: use amc.pruning.apply.selection_scores")
    raise ConfigError(f"unknown channel selection {method!r}; use one of {', '.join(SELECTIONS)}")


def select_channels(scores: torch.Tensor, keep: int, sort: bool = True) -> torch.Tensor:
    """Indices of the ``keep`` best channels (ascending index order unless ``sort=False``: best first)."""
    keep = int(keep)
    if not 1 <= keep <= len(scores):
        raise ConfigError(f"cannot keep {keep} of {len(scores)} channels")
    top = torch.argsort(scores, descending=True, stable=True)[:keep]
    return top.sort().values if sort else top


def check_channels(structure: PrunableStructure, channels: Sequence[int]) -> list[int]:
    """Validate a channel list against the decision points; returns it as ints."""
    if len(channels) != len(structure.points):
        raise ConfigError(
            f"{structure.arch_name} has {len(structure.points)} decision points "
            f"(widths {structure.widths}), got {len(channels)} channel counts"
        )
    out = []
    for c, point in zip(channels, structure.points, strict=True):
        if int(c) != c or not 1 <= int(c) <= point.channels:
            raise ConfigError(f"{point.name} has {point.channels} channels; cannot keep {c}")
        out.append(int(c))
    return out


def kept_positions(structure: PrunableStructure, keep: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
    """For every (state_dict key, dim) a decision point indexes: the positions that stay, ascending.

    ``keep`` may list a point's channels in any order (HW7's slimming keeps them best first); a tensor
    indexed by one point alone follows that order, so a pure reordering is a permutation.
    """
    out: dict[tuple[str, int], torch.Tensor] = {}
    for (key, dim), entries in structure.tensor_plan().items():
        if len(entries) == 1:
            point, positions, roots = entries[0]
            idx = keep[point].to(torch.long)
            if torch.equal(roots, torch.arange(len(roots))):
                out[(key, dim)] = positions.index_select(0, idx)  # keeps ``keep``'s order
                continue
            mask = torch.zeros(structure.points[point].channels, dtype=torch.bool)
            mask[idx] = True
            out[(key, dim)] = positions[mask[roots]]
            continue
        size = max(int(p.max()) for _, p, _ in entries) + 1
        alive = torch.ones(size, dtype=torch.bool)
        covered = torch.zeros(size, dtype=torch.bool)
        for point, positions, roots in entries:
            mask = torch.zeros(structure.points[point].channels, dtype=torch.bool)
            mask[keep[point].to(torch.long)] = True
            alive[positions] &= mask[roots]
            covered[positions] = True
        out[(key, dim)] = (alive | ~covered).nonzero().flatten()
    return out


def _sorted(idx: torch.Tensor) -> bool:
    return bool((idx[1:] > idx[:-1]).all()) if len(idx) > 1 else True


def _sliced(state, structure, keep, overrides, clone: bool) -> dict[str, torch.Tensor]:
    for name, w in (overrides or {}).items():
        key = f"{name}.weight"
        state[key] = w.detach().to(state[key].dtype)
    changed: dict[str, torch.Tensor] = {}
    for (key, dim), idx in kept_positions(structure, keep).items():
        t = changed.get(key, state[key])
        if len(idx) == t.shape[dim] and torch.equal(idx, torch.arange(len(idx))):
            continue
        changed[key] = t.index_select(dim, idx.to(t.device))
    state.update(changed)
    if clone:
        state = {k: (v if k in changed else v.clone()) for k, v in state.items()}
    return state


def slice_model(
    model: nn.Module,
    structure: PrunableStructure,
    keep: Sequence[torch.Tensor],
    overrides: dict[str, torch.Tensor] | None = None,
    share_unchanged: bool = False,
) -> nn.Module:
    """A physically smaller copy of ``model`` holding the kept channels (same module tree, smaller layers).

    :param share_unchanged: let tensors no decision touches share memory with ``model`` (inference only:
        the search scores thousands of strategies and never trains them).
    """
    state = {k: v.detach() for k, v in model.state_dict().items()}
    state = _sliced(state, structure, keep, overrides, clone=not share_unchanged)
    small = _copy_structure(model)
    _assign(small, state)
    small.arch = pruned_arch(structure, keep)
    return small


def _copy_structure(model: nn.Module) -> nn.Module:
    """A deep copy of the module tree that does not copy tensor data (every tensor is reassigned next)."""
    memo: dict[int, object] = {}
    for t in [*model.parameters(), *model.buffers()]:
        memo[id(t)] = t
    return copy.deepcopy(model, memo)


def _assign(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give every module its (possibly sliced) tensors and the sizes that go with them."""
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        resized = False
        for pname, param in list(module._parameters.items()):
            if param is None:
                continue
            new = state[prefix + pname]
            resized |= new.shape != param.shape
            module._parameters[pname] = nn.Parameter(new, requires_grad=param.requires_grad)
        for bname, buf in list(module._buffers.items()):
            if buf is None or prefix + bname not in state:
                continue
            new = state[prefix + bname]
            resized |= new.shape != buf.shape
            module._buffers[bname] = new
        if resized:
            _resize_attributes(module)


def _resize_attributes(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        out = module.weight.shape[0]
        if is_depthwise(module):
            module.in_channels = module.out_channels = module.groups = out
        else:
            module.out_channels, module.in_channels = out, module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = (module.weight if module.weight is not None else module.running_mean).shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.weight.shape[0],)


def pruned_arch(structure: PrunableStructure, keep: Sequence[torch.Tensor]) -> dict | None:
    """The architecture a pruned checkpoint stores: the builder plus the kept channels of each pruned group.

    Pruning an already pruned model composes: the stored indices always refer to the base network.
    """
    if structure.arch is None:
        return None
    before = structure.arch.get("pruning") or {}
    earlier = before.get("keep", {})
    kept = {}
    for p, idx in zip(structure.points, keep, strict=True):
        base_idx = torch.tensor(earlier[p.name])[idx.to(torch.long)] if p.name in earlier else idx
        if p.name in earlier or len(idx) < p.channels or not _sorted(idx):
            kept[p.name] = [int(i) for i in base_idx.tolist()]
    for name, idx in earlier.items():
        kept.setdefault(name, idx)
    base = {k: v for k, v in structure.arch.items() if k != "pruning"}
    input_size = before.get("input_size", list(structure.input_size))
    return {**base, "pruning": {"input_size": list(input_size), "keep": kept}}


def prune_to_arch(model: nn.Module, pruning: dict) -> nn.Module:
    """Replay a stored ``pruning`` entry on a freshly built base model (what ``models.load_checkpoint`` calls)."""
    import warnings

    from amc.pruning.structure import analyse

    with warnings.catch_warnings():  # fixed groups were reported when the model was pruned
        warnings.simplefilter("ignore")
        structure = analyse(model, tuple(pruning["input_size"]))
    by_name = {p.name: i for i, p in enumerate(structure.points)}
    missing = [n for n in pruning["keep"] if n not in by_name]
    if missing:
        raise ConfigError(f"the checkpoint prunes channel groups this model does not have: {missing[:3]}")
    keep = [torch.arange(p.channels) for p in structure.points]
    for name, idx in pruning["keep"].items():
        keep[by_name[name]] = torch.tensor(idx, dtype=torch.long)
    return slice_model(model, structure, keep, share_unchanged=True)


@contextmanager
def masked_inputs(model: nn.Module, structure: PrunableStructure, keep: Sequence[torch.Tensor]):
    """Zero every dropped channel where its consumers read it (the "pseudo-pruned" reference network)."""
    state = dict(model.state_dict())
    modules = dict(model.named_modules())
    masks: dict[str, torch.Tensor] = {}
    for (key, dim), idx in kept_positions(structure, keep).items():
        layer = key.rsplit(".", 1)[0]
        if dim != 1 or not key.endswith("weight") or layer not in modules:
            continue
        m = modules[layer]
        if not isinstance(m, nn.Conv2d | nn.Linear) or is_depthwise(m):
            continue
        mask = torch.zeros(state[key].shape[1])
        mask[idx] = 1
        masks[layer] = mask
    handles = []
    for layer, mask in masks.items():

        def hook(_m, inputs, mask=mask):
            x = inputs[0]
            if x.dim() > 2 and isinstance(_m, nn.Conv2d):
                shape = (1, -1) + (1,) * (x.dim() - 2)
            else:
                shape = (1,) * (x.dim() - 1) + (-1,)
            return (x * mask.to(x.device, x.dtype).view(shape),)

        handles.append(modules[layer].register_forward_pre_hook(hook))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
