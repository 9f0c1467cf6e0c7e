"""amc: automated network compression (AMC channel pruning, least squares, knowledge distillation)."""

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
