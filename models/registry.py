"""Model registry: ``create_model(name, **kwargs)`` over our constructors and any importable builder.

``name`` is a registered name (``mobilenet_v1``) or the dotted path of any function or class that
builds an ``nn.Module`` (``torchvision.models.resnet18``, ``mypkg.nets.build``). Every model built
here remembers how it was built (``model.arch``), so a checkpoint can carry its architecture and be
rebuilt with one call.

A name read from a file is untrusted: :func:`check_builder_trusted` lets through only registered models,
torchvision's classification builders and the builders the caller names, so a checkpoint cannot make us
import or call anything else (``os.system``, an attacker's ``.py`` file).

A builder that does not take ``in_channels`` gets its first Conv2d replaced by one reading
``in_channels`` (same kernel, stride and padding): 1-channel Fashion-MNIST then runs on a
torchvision network without tripling its input.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch.nn as nn

from amc.models.errors import AmcError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class ModelConfigError(AmcError):
    """Arguments a model constructor does not accept."""


class UnknownModelError(ModelConfigError):
    """Raised for a model name that is not registered."""


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model constructor under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


class UntrustedBuilderError(ModelConfigError):
    """A checkpoint names a builder that is neither registered, torchvision's, nor named by the user."""


def is_torchvision_classifier(name: str) -> bool:
    """``torchvision.models.<builder>`` for one of torchvision's classification builders (no other module)."""
    prefix = "torchvision.models."
    if not name.startswith(prefix) or "." in name[len(prefix) :]:
        return False
    import torchvision.models

    return name[len(prefix) :] in torchvision.models.list_models(module=torchvision.models)


def check_builder_trusted(name: str, trusted: Iterable[str] = (), what: str = "the checkpoint") -> None:
    """Refuse a builder name read from a file unless it is safe to build or the user named it in this run.

    :param trusted: builder names the user gave in this run (``model._target_=``, ``trusted_builders=``).
    """
    if name in _REGISTRY or name in set(trusted) or is_torchvision_classifier(name):
        return
    raise UntrustedBuilderError(
        f"{what} names the builder {name!r}, which is not a registered model or a torchvision classification "
        f"builder, so it was not imported or called; if you trust the file, name the builder yourself: "
        f"model._target_={name} on the command line, or load_checkpoint(..., trusted_builders=[{name!r}])"
    )


def resolve_builder(name: str, source_file: str | None = None) -> Callable[..., nn.Module]:
    """The constructor behind a registered name or a dotted import path.

    :param source_file: a ``.py`` file that holds the builder, for a script outside any package. Only ever a
        file the user names in this run (``model.source=``); a path read from a checkpoint or a run dir is
        never passed here, so no file on disk runs because a file said so.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, _, attr = name.rpartition(".")
    if module_name:
        if source_file:
            builder = _from_file(module_name, attr, source_file)
        else:
            try:
                builder = getattr(importlib.import_module(module_name), attr, None)
            except ImportError as exc:
                raise UnknownModelError(
                    f"unknown model {name!r}: cannot import {module_name!r} ({exc}); if its code is in a .py file "
                    f"outside any package, name that file: model.source=PATH.py (in Python: builder=)"
                ) from None
        if callable(builder):
            return builder
        raise UnknownModelError(f"unknown model {name!r}: {module_name!r} has no callable {attr!r}")
    raise UnknownModelError(
        f"unknown model {name!r}; registered models: {', '.join(list_models())} "
        "(or a dotted builder path, e.g. torchvision.models.resnet18)"
    )


def _from_file(module_name: str, attr: str, source_file: str) -> Callable | None:
    """``attr`` of the user's ``source_file``, executed as module ``module_name`` (the user named the file)."""
    path = os.path.abspath(os.path.expanduser(source_file))
    if not path.endswith(".py") or not os.path.isfile(path):
        raise UnknownModelError(f"model.source={source_file}: not a .py file")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UnknownModelError(f"model.source={source_file}: cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, attr, None)


def source_hint(builder: Callable) -> str | None:
    """The file name (no folder) of a builder's code, stored with a model only to word a load error: the
    saver's folders stay private, and the name is never used to find or run anything."""
    try:
        path = inspect.getsourcefile(builder)
    except TypeError:
        return None
    return os.path.basename(path) if path else None


def _accepts(builder: Callable, keyword: str) -> bool:
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return True
    return keyword in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _names(builder: Callable, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return False


def _convs_reading_input(model: nn.Module) -> list[str]:
    """Names of the Conv2d modules the traced forward applies to the input itself (Inception-like stems have
    several); just the first Conv2d when the network cannot be traced."""
    import torch.fx as fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # fx raises many kinds on data-dependent control flow
        graph = None
    if graph is not None:
        modules = dict(model.named_modules())
        inputs = [n for n in graph.nodes if n.op == "placeholder"][:1]
        names = [
            str(user.target)
            for node in inputs
            for user in node.users
            if user.op == "call_module" and isinstance(modules.get(user.target), nn.Conv2d)
        ]
        if names:
            return names
    first = next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    return [first] if first is not None else []


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Replace every Conv2d that reads the input by one that reads ``in_channels`` (everything else unchanged)."""
    for name in _convs_reading_input(model):
        conv = model.get_submodule(name)
        if conv.in_channels == in_channels:
            continue
        model.set_submodule(
            name,
            nn.Conv2d(
                in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                1 if conv.groups == 1 else in_channels,
                conv.bias is not None,
                conv.padding_mode,
            ),
        )


def create_model(
    name: str, *, builder: Callable[..., nn.Module] | None = None, source: str | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered or importable model; the result carries ``arch = {"name", "kwargs"}``.

    ``num_classes`` is dropped for builders that cannot take it; ``in_channels`` for builders that do
    not name it is applied by adapting the first conv.

    :param builder: the callable to build with, given by the caller (``name`` is then only recorded).
    :param source: a ``.py`` file the user names that holds the builder (see :func:`resolve_builder`).
    """
    builder = builder or resolve_builder(name, source)
    call = dict(kwargs)
    in_channels = call.pop("in_channels", None) if not _names(builder, "in_channels") else None
    if "num_classes" in call and not _accepts(builder, "num_classes"):
        call.pop("num_classes")
    try:
        model = builder(**call)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"cannot build {name!r} with {call}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelConfigError(f"{name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    if in_channels is not None:
        adapt_input_channels(model, int(in_channels))
    model.arch = {"name": name, "kwargs": dict(kwargs)}
    if name not in _REGISTRY and not name.startswith("torchvision."):
        hint = source_hint(builder)
        if hint:
            model.arch["source_hint"] = hint
    return model
