"""amc: automated network compression (AMC channel pruning, least squares, knowledge distillation).

The Python API (docs/python-api.md)::

    import amc
    result = amc.compress(model, example_input, budget=amc.Budget(flops=0.5), evaluate=my_metric, calibration=x)
    amc.save(result.model, "pruned.pt")
    model = amc.load("pruned.pt", builder=MyNet)

``profile``, ``compress``, ``prune``, ``distill``, ``save``, ``load``, ``make_env``, ``Budget``, ``Compressed``
and ``AmcError`` (with its subclasses) are imported on first use, so the command-line tools start light.
"""

from typing import Any

from amc.runtime.imports import quiet_cpp_extension_notice, skip_triton_without_gpu

skip_triton_without_gpu()  # before anything imports torchvision
quiet_cpp_extension_notice()


def _replay_pruning(model: Any, pruning: Any) -> Any:
    """A pruned checkpoint's channel choice replayed by the pruning engine, imported only when one is loaded."""
    from amc.pruning.slicing import prune_to_arch

    return prune_to_arch(model, pruning)


# amc.models sits below the pruning engine and imports none of it: the package that holds both joins them here.
from amc.models.checkpoint import register_pruning_replay  # noqa: E402

register_pruning_replay(_replay_pruning)


def _register_environment() -> None:
    """``gymnasium.make("amc/ChannelPruning-v0")``: the env, or without arguments the tiny digits task the search
    code builds (the env knows no search code, so the package that holds both joins them here)."""
    import gymnasium

    from amc.envs import ENV_ID

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="amc.strategy.tiny:make_env")


_register_environment()

from amc.errors import AmcError  # noqa: E402  (after the runtime set-up above)

_API = {
    "Budget": "amc.api.budget",
    "BudgetError": "amc.api.budget",
    "Compressed": "amc.api.compress",
    "METHODS": "amc.api.compress",
    "compress": "amc.api.compress",
    "prune": "amc.api.compress",
    "distill": "amc.api.distillation",
    "make_env": "amc.api.environment",
    "InputError": "amc.api.inputs",
    "load": "amc.api.persist",
    "save": "amc.api.persist",
    "Profile": "amc.api.profiling",
    "profile": "amc.api.profiling",
    "CheckpointError": "amc.models.checkpoint",
    "ConfigError": "amc.errors",
    "EvaluateError": "amc.strategy.scoring",
}
__all__ = ["AmcError", *_API]


def __getattr__(name: str) -> Any:
    """The public API, imported when first used (``import amc`` stays light for the command-line tools)."""
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'amc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
