"""The library's inputs made into what the search reads, each refused in one AmcError line when it cannot be."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from amc.errors import AmcError
from amc.training.steps import inputs_of


class InputError(AmcError):
    """An example input, calibration set or dataset the model cannot take."""


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live: candidates are built and scored there."""
    param = next(model.parameters(), None)
    if param is None:
        raise InputError(f"{type(model).__name__} has no parameters: there is nothing to compress")
    return param.device


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got a {type(model).__name__}")
    return model


def check_example_input(model: nn.Module, example_input: Any) -> torch.Tensor:
    """``example_input`` as a tensor on the model's device, after a forward pass shows the model takes it."""
    if not isinstance(example_input, torch.Tensor):
        kind = type(example_input).__name__
        raise InputError(f"example_input must be a tensor (one batch the model takes), got a {kind}")
    if example_input.dim() < 2:
        raise InputError(f"example_input must have a batch dimension first, got shape {tuple(example_input.shape)}")
    example = example_input.to(model_device(model))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:
        why = " ".join(str(exc).split())[:200]
        raise InputError(
            f"the model rejects example_input of shape {tuple(example.shape)}: {type(exc).__name__}: {why}"
        ) from None
    finally:
        model.train(was)
    return example


def stack_inputs(batches: Any, example: torch.Tensor, what: str) -> torch.Tensor:
    """A tensor of inputs from a tensor or an iterable of batches (tensors, or tuples whose first item is the
    input), each sample shaped like ``example``'s."""
    if isinstance(batches, torch.Tensor):
        stacked = batches
    elif isinstance(batches, Iterable):
        parts = [inputs_of(b) for b in batches]
        if not parts or not all(isinstance(p, torch.Tensor) for p in parts):
            raise InputError(f"{what} must be a tensor or an iterable of tensor batches")
        stacked = torch.cat(parts)
    else:
        raise InputError(f"{what} must be a tensor or an iterable of input batches, got {type(batches).__name__}")
    if tuple(stacked.shape[1:]) != tuple(example.shape[1:]):
        raise InputError(
            f"{what} has samples of shape {tuple(stacked.shape[1:])}, the example input {tuple(example.shape[1:])}"
        )
    if not len(stacked):
        raise InputError(f"{what} is empty")
    return stacked.detach().float().cpu()


def classification_data(data: Any, example: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` from a pair of tensors or a DataLoader of ``(inputs, labels)`` batches."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        inputs, labels = data
    elif isinstance(data, Iterable):
        batches = list(data)
        if not batches or not all(isinstance(b, (tuple, list)) and len(b) >= 2 for b in batches):
            raise InputError("data must be (inputs, labels) tensors or a DataLoader of (inputs, labels) batches")
        inputs, labels = torch.cat([b[0] for b in batches]), torch.cat([torch.as_tensor(b[1]) for b in batches])
    else:
        raise InputError(f"data must be (inputs, labels) tensors or a DataLoader, got {type(data).__name__}")
    inputs = stack_inputs(inputs, example, "data's inputs")
    if labels.dim() != 1 or len(labels) != len(inputs) or labels.is_floating_point():
        raise InputError(f"data's labels must be one class index per input ({len(inputs)}), got {tuple(labels.shape)}")
    return inputs, labels.long().cpu()


def private_copy(model: nn.Module) -> nn.Module:
    """A copy of a caller's model that the search may read, move and change, leaving theirs as it was."""
    import copy

    return copy.deepcopy(model)
