"""One checkpoint format for the whole framework.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` accepts::

    {"format": "amc-checkpoint/1", "arch": {"name": ..., "kwargs": {...}},
     "state_dict": {...}, "metadata": {...}}

so any model rebuilds in one call: ``arch`` names its builder and arguments; a pruned model's
``arch.pruning`` adds the input size it was traced at and the kept channels of each pruned group,
which are replayed on the freshly built base network by the registered pruning engine (amc's registers
``amc.pruning.slicing.prune_to_arch``). Bare
state_dicts (also nested under ``"state_dict"``, also with DataParallel's ``module.`` prefix)
load too, given the architecture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from amc.io import loadable, save_torch_atomic
from amc.models.errors import AmcError
from amc.models.registry import UnknownModelError, check_builder_trusted, create_model

FORMAT = "amc-checkpoint/1"


class CheckpointError(AmcError):
    """A checkpoint that is missing, unreadable, or does not fit the architecture."""


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` with its architecture and ``metadata``; the write is atomic."""
    arch = getattr(model, "arch", None)
    if arch is None:
        raise CheckpointError("model was not built by models.create_model, so its architecture is unknown")
    module = model.module if hasattr(model, "module") else model  # unwrap DataParallel/DDP
    payload = {
        "format": FORMAT,
        "arch": loadable({k: v for k, v in arch.items() if k != "source"}),  # an old absolute path stays private
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "metadata": loadable(metadata),
    }
    return save_torch_atomic(payload, path)


def model_from_arch(
    arch: Mapping[str, Any],
    trusted_builders: Iterable[str] = (),
    what: str = "the checkpoint",
    *,
    builder: Callable[..., nn.Module] | None = None,
    builder_source: str | None = None,
) -> nn.Module:
    """A freshly initialised model of a stored architecture, pruned model included (weights still to load).

    Nothing the stored entry names runs unless it is registered, a torchvision classifier or the caller's
    choice; a stored file path is never read (a file cannot choose what is executed).

    :param trusted_builders: builder names the user gives in this run; a stored builder outside the registry
        and torchvision's classifiers must be one of them.
    :param builder: a callable the caller gives that builds the unpruned base; it replaces the stored name.
    :param builder_source: a ``.py`` file the user names in this run that holds a trusted builder.
    """
    name = arch["name"]
    trusted = list(trusted_builders)
    if builder is None:
        check_builder_trusted(name, trusted, what)
    kwargs = dict(arch.get("kwargs") or {})
    if kwargs.get("weights") is not None and name not in trusted and builder is None:
        raise CheckpointError(f"{what} asks for pretrained weights ({kwargs['weights']!r}), which are never fetched")
    try:
        model = _build_base(name, kwargs, builder, builder_source, what)
    except UnknownModelError as exc:
        hint = arch.get("source_hint")
        saved_from = f" (it was saved from a file named {hint})" if isinstance(hint, str) and hint else ""
        raise UnknownModelError(f"{what}: {exc}{saved_from}") from None
    if arch.get("pruning"):
        if not _pruning_replay:
            raise CheckpointError(f"{what} is a pruned network, and no pruning engine is registered to rebuild it")
        model = _pruning_replay[0](model, arch["pruning"])
    return model


def _build_base(
    name: str, kwargs: dict[str, Any], builder: Callable[..., nn.Module] | None, source: str | None, what: str
) -> nn.Module:
    """The unpruned base: the caller's ``builder()`` when given (it returns the base as saved), else the builder the
    stored name resolves to, called with the stored arguments."""
    if builder is None:
        return create_model(name, source=source, **kwargs)
    model = builder()
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"builder returned a {type(model).__name__}, not the torch.nn.Module {what} holds")
    model.arch = {"name": name, "kwargs": kwargs}
    return model


PruningReplay = Callable[[nn.Module, Mapping[str, Any]], nn.Module]
_pruning_replay: list[PruningReplay] = []  # the model zoo knows no pruning engine; one registers itself (amc)


def register_pruning_replay(replay: PruningReplay) -> None:
    """Set what rebuilds a pruned network from a freshly built base and a stored ``arch["pruning"]`` entry."""
    _pruning_replay[:] = [replay]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only=True``); raise CheckpointError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a state_dict or checkpoint")
    return dict(data)


def _state_dict_of(data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data.get(key), Mapping):
            data = data[key]
            break
    state = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError("the checkpoint holds no tensors")
    prefix = "module."
    if all(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly load ``state`` into ``model``; a mismatch is one readable CheckpointError."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"{source} does not match the architecture: " + "; ".join(parts))
    model.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    trusted_builders: Iterable[str] = (),
    builder: Callable[..., nn.Module] | None = None,
    builder_source: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Rebuild a model from ``path``; no code the file names runs unless you name it (``trusted_builders``).

    :param path: our checkpoint, or a bare state_dict (plain, nested under ``"state_dict"``, ``module.``-prefixed).
    :param name: registry name; needed for bare state_dicts, overrides the stored one otherwise.
    :param trusted_builders: dotted builder paths you trust, for checkpoints of your own networks
        (a registered model or a ``torchvision.models`` classifier needs none).
    :param builder: a callable that builds the unpruned base (a class, a function, a lambda); it is used
        instead of the stored builder name, which is then never imported.
    :param builder_source: a ``.py`` file you name that holds a trusted builder outside any package.
    :param kwargs: constructor arguments; merged over the stored ones.
    :return: the model (``model.checkpoint_metadata`` holds the stored metadata).
    """
    data = read_checkpoint(path)
    stored = data.get("arch") if data.get("format") == FORMAT else None
    if stored is None and name is None:
        raise CheckpointError(f"{path} is a bare state_dict without an architecture; pass the model name")
    arch_name = name or stored["name"]
    arch_kwargs = {**(stored["kwargs"] if stored and stored["name"] == arch_name else {}), **kwargs}
    same = stored and stored["name"] == arch_name
    pruning = stored.get("pruning") if same else None
    hint = stored.get("source_hint") if same else None
    trusted = [*trusted_builders, *([name] if name else [])]  # a name the caller passes is the caller's choice
    arch = {"name": arch_name, "kwargs": arch_kwargs, "pruning": pruning, "source_hint": hint}
    model = model_from_arch(arch, trusted, what=str(path), builder=builder, builder_source=builder_source)
    load_weights(model, _state_dict_of(data), source=str(path))
    model.checkpoint_metadata = dict(data.get("metadata") or {})
    return model
