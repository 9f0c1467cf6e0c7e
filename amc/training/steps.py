"""The optimisation step every training path takes, and distillation over any batches.

:class:`Stepper` is one step of gradient descent (zero, backward, clip, step, schedule); the epoch loop of
``amc.training.loop``, the library's ``amc.distill`` and the short-distillation evaluator all step through it.
:func:`distill_on_batches` distils a student from a teacher over any iterable of batches, with any loss on their
outputs: what a user's own data and task need (a detector, a segmenter, a regressor), not only class logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from amc.choices import MixedPrecision
from amc.errors import ConfigError

OutputLoss = Callable[[Any, Any], torch.Tensor]  # (student output, teacher output) -> scalar


class Stepper:
    """One optimisation step: zero the gradients, backpropagate ``loss``, clip, step, advance the schedule."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        clip_norm: float | None = None,
        params: Iterable[nn.Parameter] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        """:param scaler: scales float16 losses so small gradients survive (``mixed_precision=float16``)."""
        self.optimizer, self.scheduler, self.clip_norm, self.scaler = optimizer, scheduler, clip_norm, scaler
        self.params = list(params) if params is not None else [p for g in optimizer.param_groups for p in g["params"]]

    def step(self, loss: torch.Tensor) -> None:
        """Apply one gradient step for ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
        if self.clip_norm:
            nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()


MIXED_PRECISIONS = tuple(MixedPrecision)


def autocast(mixed_precision: str | None, device: torch.device):
    """The context a forward pass and its loss run in: ``torch.autocast`` in ``mixed_precision`` (``None``: full
    float32). float16 needs CUDA; bfloat16 runs on CPU and CUDA."""
    if mixed_precision is None:
        return contextlib.nullcontext()
    if mixed_precision not in MIXED_PRECISIONS:
        choices = ", ".join(MIXED_PRECISIONS)
        raise ConfigError(f"mixed_precision must be one of {choices} or null, got {mixed_precision!r}")
    if mixed_precision == "float16" and device.type != "cuda":
        raise ConfigError("mixed_precision=float16 needs a CUDA device; use bfloat16 on the CPU")
    return torch.autocast(device.type, dtype=getattr(torch, mixed_precision))


def grad_scaler(mixed_precision: str | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for float16 training (bfloat16 and float32 need none)."""
    return torch.amp.GradScaler(device.type) if mixed_precision == "float16" else None


def soft_logit_loss(temperature: float = 4.0) -> OutputLoss:
    """Hinton's soft-target term alone: ``T²·KL(softmax(t/T) ‖ softmax(s/T))``, for outputs that are logits."""

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return temperature**2 * F.kl_div(
            F.log_softmax(student / temperature, dim=1),
            F.log_softmax(teacher / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )

    return loss


def inputs_of(batch: Any) -> Any:
    """The model input of a batch: the batch itself, or the first element of a tuple or list (images, labels)."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` (a tensor, or a tuple, list or dict of them) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def call(model: nn.Module, inputs: Any) -> Any:
    """``model(inputs)``; a tuple of inputs is spread over the forward's arguments, a dict over its keywords."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def distill_on_batches(
    student: nn.Module,
    teacher: nn.Module | Callable[[Any], Any],
    batches: Iterable[Any],
    loss: Callable[[Any, Any, Any], torch.Tensor],
    stepper: Stepper,
    steps: int,
    description: str | None = None,
) -> float:
    """``steps`` distillation steps of ``student`` towards ``teacher`` over ``batches`` (cycled when shorter).

    :param teacher: the teacher network (run without gradients), or any callable from a batch's inputs to the
        teacher's output (cached logits, say).
    :param loss: ``(student output, teacher output, batch) -> scalar``.
    :param description: a progress bar's label (``None``: no bar).
    :return: the mean loss over the steps.
    """
    device = next(student.parameters()).device
    student.train()
    total = 0.0
    batch_iter = _cycle(batches)
    bar = tqdm(range(steps), desc=description, disable=description is None, leave=False, dynamic_ncols=True)
    for _ in bar:
        batch = to_device(next(batch_iter), device)
        inputs = inputs_of(batch)
        with torch.no_grad():
            target = call(teacher, inputs) if isinstance(teacher, nn.Module) else teacher(inputs)
        value = loss(call(student, inputs), target, batch)
        stepper.step(value)
        total += float(value.detach())
        bar.set_postfix(loss=f"{float(value.detach()):.3f}")
    return total / max(steps, 1)


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    """Endless batches: a DataLoader or list is iterated again (reshuffled by the loader) when it runs out."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training data yielded no batch")
