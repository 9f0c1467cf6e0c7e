"""Model registry: ``create_model(name, **kwargs)`` over small constructor functions.

Every model built here remembers how it was built (``model.arch``), so a checkpoint can
carry its architecture and be rebuilt with one call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class ModelConfigError(ValueError):
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


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; the result carries ``arch = {"name", "kwargs"}``."""
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    try:
        model = _REGISTRY[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"cannot build {name!r} with {kwargs}: {exc}") from None
    model.arch = {"name": name, "kwargs": dict(kwargs)}
    return model
