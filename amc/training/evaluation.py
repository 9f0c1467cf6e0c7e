"""Top-k accuracy of a model on a loader or on pre-stacked tensors."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k logits, for each k (k capped at #classes)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return [int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.inference_mode()
def count_correct(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu"
) -> tuple[float, int, int, int]:
    """(summed cross-entropy, top-1 hits, top-5 hits, samples) over ``batches``, in eval mode."""
    was_training = model.training
    model.eval()
    n, loss, correct1, correct5 = 0, 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        c1, c5 = topk_correct(logits, y)
        correct1, correct5, n = correct1 + c1, correct5 + c5, n + len(y)
    model.train(was_training)
    return loss, correct1, correct5, n


def accuracy_of(loss: float, correct1: float, correct5: float, n: float) -> dict[str, float]:
    n = max(n, 1)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss / n, "count": n}


def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Return ``top1`` and ``top5`` (percent) and mean cross-entropy ``loss`` over ``batches``."""
    return accuracy_of(*count_correct(model, batches, device))


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for i in range(0, len(y), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]
