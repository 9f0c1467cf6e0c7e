"""Channel selection and physical slicing into a smaller model of the same family."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

from amc.errors import ConfigError
from amc.structure import DecisionPoint, PrunableStructure
from models import create_model, load_weights

SELECTIONS = ("l1", "l2", "bn_gamma", "random")


def channel_scores(
    model: nn.Module, point: DecisionPoint, method: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Importance of each channel of ``point`` (higher = keep).

    ``l1``/``l2``: norm of the consumer's weights on that input channel (AMC's criterion; for several
    consumers, summed); ``bn_gamma``: the signed BN scale, as HW7's slimming; ``random``: a control.
    """
    modules = dict(model.named_modules())
    if method in ("l1", "l2"):
        p = 1 if method == "l1" else 2
        score = torch.zeros(point.channels)
        for name in point.consumers:
            w = modules[name].weight.detach().float().cpu()
            w = w.transpose(0, 1).reshape(point.channels, -1)
            score += w.norm(p=p, dim=1)
        return score
    if method == "bn_gamma":
        if point.gamma_bn is None:
            raise ConfigError(f"decision point {point.name} has no BatchNorm to rank channels by")
        return modules[point.gamma_bn].weight.detach().float().cpu().clone()
    if method == "random":
        return torch.rand(point.channels, generator=generator)
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


def slice_state_dict(
    model: nn.Module,
    structure: PrunableStructure,
    keep: Sequence[torch.Tensor],
    overrides: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The model's state_dict with every decision point's dropped channels removed.

    :param overrides: full-width replacement weights (e.g. reconstructed consumers) applied before slicing.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, w in (overrides or {}).items():
        state[f"{name}.weight"] = w.detach().to(state[f"{name}.weight"].dtype).clone()
    for point, idx in zip(structure.points, keep, strict=True):
        idx = idx.to(torch.long)
        for module in point.sliced_outputs:
            for key in [k for k in state if k.rsplit(".", 1)[0] == module]:
                if state[key].dim() >= 1 and state[key].shape[0] == point.channels:
                    state[key] = state[key].index_select(0, idx)
        for module in point.consumers:
            key = f"{module}.weight"
            state[key] = state[key].index_select(1, idx)
    return state


def slice_model(
    model: nn.Module,
    structure: PrunableStructure,
    keep: Sequence[torch.Tensor],
    overrides: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A new, physically smaller model of the same family holding the kept channels."""
    channels = [len(k) for k in keep]
    small = create_model(structure.arch_name, **structure.new_arch_kwargs(channels))
    load_weights(small, slice_state_dict(model, structure, keep, overrides), source="sliced weights")
    return small


@contextmanager
def masked_inputs(model: nn.Module, structure: PrunableStructure, keep: Sequence[torch.Tensor]):
    """Zero every dropped channel where its consumers read it (the "pseudo-pruned" reference network)."""
    modules = dict(model.named_modules())
    handles = []
    for point, idx in zip(structure.points, keep, strict=True):
        mask = torch.zeros(point.channels)
        mask[idx] = 1

        def hook(_m, inputs, mask=mask):
            x = inputs[0]
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return (x * mask.to(x.device, x.dtype).view(shape),)

        handles += [modules[name].register_forward_pre_hook(hook) for name in point.consumers]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
