"""``amc.save`` and ``amc.load``: a pruned network to a file of data only, and back in any process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

from amc.api.inputs import check_model
from amc.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from amc.models.registry import UntrustedBuilderError


def save(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` as an amc checkpoint: its weights, how it was built and, when pruned, the channels each pruned
    group kept; ``metadata`` (JSON-like values) goes with it. Nothing is pickled: :func:`load` rebuilds the network.

    A network from the model zoo or torchvision is rebuilt by name; any other is rebuilt by the ``builder`` you give
    :func:`load`. The write is atomic.

    :param model: the network, pruned or not.
    :param path: the file to write.
    :param metadata: saved with it, read back as ``model.checkpoint_metadata``.
    """
    model = check_model(model)
    if getattr(model, "arch", None) is None:  # built outside the zoo: its class names it, load's builder builds it
        model.arch = {"name": f"{type(model).__module__}.{type(model).__qualname__}", "kwargs": {}}
    return save_checkpoint(model, path, **metadata)


def load(path: str | os.PathLike, *, builder: Callable[[], nn.Module] | None = None) -> nn.Module:
    """The network saved at ``path`` (read with ``weights_only=True``), pruned as it was saved, in eval mode.

    :param path: a file :func:`save` (or ``amc.search``, ``amc.finetune``) wrote.
    :param builder: a callable that returns the unpruned base network: a class, a function, ``lambda:
        MyNet(width=16)``. Needed for your own networks: a file never chooses code to run. Zoo and torchvision
        networks need none.
    :returns: the network; ``model.checkpoint_metadata`` holds what was saved with it.
    :raises CheckpointError: for a missing or unreadable file, weights that do not fit, or a user network saved
        without the ``builder`` to rebuild it.
    """
    if builder is not None and not callable(builder):
        kind = type(builder).__name__
        raise CheckpointError(f"builder must be a callable that returns the unpruned base, got a {kind}")
    try:
        return load_checkpoint(path, builder=builder).eval()
    except UntrustedBuilderError:
        raise CheckpointError(
            f"{path} holds a network of your own code, which a file cannot choose to run: pass the builder of its "
            "unpruned base, amc.load(path, builder=MyNet)"
        ) from None
