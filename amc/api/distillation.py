"""``amc.distill``: fine-tune a (pruned) student by knowledge distillation from its teacher, on your own data."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from amc.api.inputs import InputError, check_model, model_device
from amc.strategy.scoring import call_user_metric

log = logging.getLogger(__name__)

DistillLoss = Callable[[Any, Any], torch.Tensor]  # (student output, teacher output) -> scalar


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train_data: Iterable[Any],
    *,
    epochs: float,
    loss: DistillLoss | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    lr: float | None = None,
    temperature: float | None = None,
    alpha: float | None = None,
    grad_clip_norm: float | None = None,
    steps_per_epoch: int | None = None,
    seed: int = 0,
) -> nn.Module:
    """Train ``student`` (in place) to match ``teacher`` on ``train_data``; the student, in eval mode.

    :param student: the network to train, e.g. ``amc.compress(...).model``.
    :param teacher: the network it learns from, e.g. the unpruned base (run in eval mode, without gradients).
    :param train_data: a DataLoader or any iterable of batches: input tensors, or tuples and lists whose first item
        is the input (a second, the class labels, feeds the default loss's hard-label term).
    :param epochs: passes over ``train_data`` (fractions allowed).
    :param loss: ``loss(student_output, teacher_output) -> scalar`` for outputs that are not class logits (a
        detector's, a segmenter's, a regressor's); default: Hinton's logit KD, ``(1 - alpha)·CE + alpha·T²·KL``
        (the CE term only where batches carry labels).
    :param evaluate: ``evaluate(student) -> float``, called after each epoch and logged.
    :param lr, temperature, alpha, grad_clip_norm: default to ``amc.finetune``'s (``FinetuneConfig.train`` and
        ``DistillConfig`` in ``amc.settings``); SGD with Nesterov momentum, cosine decay after a short warm-up.
    :param steps_per_epoch: needed when ``train_data`` has no length.
    :param seed: seeds the training's random draws.
    """
    from amc.settings import DistillConfig, FinetuneConfig, field_default
    from amc.training.loop import build_optimizer, cosine_with_warmup
    from amc.training.steps import Stepper, distill_on_batches, soft_logit_loss

    student, teacher = check_model(student), check_model(teacher)
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not epochs > 0 or math.isinf(epochs):
        raise InputError(f"epochs must be a positive number, got {epochs!r}")
    if loss is not None and not callable(loss):
        raise InputError("loss must be callable: loss(student_output, teacher_output) -> scalar tensor")
    train, kd = field_default(FinetuneConfig, "train"), DistillConfig()
    lr = train.lr if lr is None else lr
    temperature = kd.temperature if temperature is None else temperature
    alpha = kd.alpha if alpha is None else alpha
    clip = train.grad_clip_norm if grad_clip_norm is None else grad_clip_norm
    if steps_per_epoch is None:
        try:
            steps_per_epoch = len(train_data)  # type: ignore[arg-type]
        except TypeError:
            raise InputError("train_data has no length: pass steps_per_epoch=") from None
    steps = max(1, round(epochs * steps_per_epoch))
    device = model_device(student)
    teacher.to(device).eval()
    torch.manual_seed(seed)
    optimizer = build_optimizer(student.parameters(), type(train)(**{**train.__dict__, "lr": lr}))
    warmup = int(train.warmup_epochs * steps_per_epoch)
    stepper = Stepper(optimizer, cosine_with_warmup(optimizer, steps, warmup), clip)
    objective = _objective(loss, temperature, alpha, soft_logit_loss(temperature))
    done = 0
    epoch = 0
    while done < steps:
        chunk = min(steps_per_epoch, steps - done)
        epoch += 1
        mean = distill_on_batches(
            student, teacher, train_data, objective, stepper, chunk, f"distill epoch {epoch}/{math.ceil(epochs)}"
        )
        done += chunk
        line = f"distill epoch {epoch}: mean loss {mean:.4f} over {chunk} steps"
        if evaluate is not None:
            line += f"; evaluate() {call_user_metric(evaluate, student.eval()):.4g}"
        log.info(line)
    return student.eval()


def _objective(loss: DistillLoss | None, temperature: float, alpha: float, soft: DistillLoss):
    """``(student output, teacher output, batch) -> loss``: the user's, or logit KD with the batch's labels."""
    if loss is not None:
        return lambda out, target, _batch: _scalar(loss(out, target))

    def logit_kd(out: torch.Tensor, target: torch.Tensor, batch: Any) -> torch.Tensor:
        labels = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise InputError("the default loss is logit KD for (batch, classes) outputs: pass loss= for others")
        if isinstance(labels, torch.Tensor) and labels.dim() == 1 and not labels.is_floating_point():
            return (1 - alpha) * F.cross_entropy(out, labels) + alpha * soft(out, target)
        return soft(out, target)

    return logit_kd


def _scalar(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise InputError("loss must return a scalar tensor")
    return value
