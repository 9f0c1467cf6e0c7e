"""The one training loop: base-model training, fine-tuning and distillation all run through it.

:class:`Trainer` does the work of an epoch (SGD/AdamW, cosine decay with per-iteration warm-up, search-val
and test top-1, DistributedDataParallel under ``torchrun``); everything around it (resume state,
checkpoints, metrics, tracking) is a hook (``amc.training.hooks``). ``fit`` is the usual wiring.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler, Subset
from tqdm import tqdm

from amc.data import DataSplits, make_loader
from amc.errors import ConfigError
from amc.settings import TrainConfig
from amc.tracking import Tracker
from amc.training.distributed import Dist, all_reduce_sum
from amc.training.evaluation import accuracy_of, count_correct
from amc.training.hooks import Checkpoints, Hook, Metrics, ResumeState, Tracking
from amc.training.steps import Stepper, autocast, grad_scaler

LossFn = Callable[..., torch.Tensor]  # (logits, labels, inputs, *extras of the training set) -> loss


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; use sgd or adamw")


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _shard(dataset: Dataset, ctx: Dist) -> Dataset:
    """This rank's share of an evaluation set (disjoint, so summed counts are exact)."""
    return Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size)) if ctx.enabled else dataset  # type: ignore[arg-type]


def evaluate_split(model: nn.Module, dataset: Dataset, cfg: TrainConfig, ctx: Dist) -> dict[str, float]:
    """Top-1/top-5 (percent) over a whole split, reduced across ranks."""
    batches = make_loader(_shard(dataset, ctx), cfg.eval_batch_size, False, cfg.num_workers)
    return accuracy_of(*all_reduce_sum(list(count_correct(model, batches, ctx.device)), ctx))


@dataclass
class Progress:
    """Where a fit stands; restored by :class:`amc.training.hooks.ResumeState`."""

    epoch: int = 0
    best_top1: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    improved: bool = False


class Trainer:
    """Trains ``model`` on ``data.train`` for ``cfg.epochs``, evaluating search-val and test after each.

    :param seed: seeds the shuffling and the model's random ops (offset by the rank).
    :param loss_fn: ``(logits, labels, inputs, *extras) -> loss``; cross-entropy (with label smoothing) by default.
    :param extra_params: trained along with the model (e.g. distillation adapters).
    :param hooks: run after each epoch and at the end, in order.
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        cfg: TrainConfig,
        ctx: Dist,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        extra_params: Iterable[nn.Parameter] | None = None,
        hooks: Sequence[Hook] = (),
        description: str = "train",
    ) -> None:
        torch.manual_seed(seed + ctx.rank)
        self.model, self.data, self.cfg, self.ctx, self.description = model, data, cfg, ctx, description
        self.hooks = list(hooks)
        self.extra_params = list(extra_params or [])
        model.to(ctx.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
        self.net: nn.Module = model
        if ctx.enabled:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.params = list(model.parameters()) + self.extra_params
        self.optimizer = build_optimizer(self.params, cfg)
        self.sampler = DistributedSampler(data.train, shuffle=True, seed=seed) if ctx.enabled else None
        self.loader = make_loader(
            data.train, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, seed=seed, sampler=self.sampler
        )
        self.steps_per_epoch = min(len(self.loader), cfg.max_steps_per_epoch or len(self.loader))
        total, warmup = cfg.epochs * self.steps_per_epoch, int(cfg.warmup_epochs * self.steps_per_epoch)
        self.scheduler = cosine_with_warmup(self.optimizer, total, warmup)
        precision = cfg.mixed_precision
        self.stepper = Stepper(
            self.optimizer, self.scheduler, cfg.grad_clip_norm, self.params, grad_scaler(precision, ctx.device)
        )
        self.autocast = lambda: autocast(precision, ctx.device)
        self.criterion = loss_fn or (
            lambda logits, y, *_: F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        )
        self.progress = Progress()

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; the summary (best and last rows, wall time)."""
        for hook in self.hooks:
            hook.on_fit_start(self)
        p = self.progress
        for epoch in range(p.epoch, self.cfg.epochs):
            t0 = time.perf_counter()
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            val = evaluate_split(self.model, self.data.search_val, self.cfg, self.ctx)
            test = evaluate_split(self.model, self.data.test, self.cfg, self.ctx)
            p.elapsed_s += time.perf_counter() - t0
            row.update(
                search_val_top1=val["top1"],
                test_top1=test["top1"],
                test_top5=test["top5"],
                lr=self.scheduler.get_last_lr()[0],
                elapsed_s=p.elapsed_s,
            )
            p.epoch, p.improved = epoch + 1, val["top1"] > p.best_top1
            p.best_top1 = max(p.best_top1, val["top1"])
            p.history.append(row)
            for hook in self.hooks:
                hook.on_epoch_end(self, row)
        best = max(p.history, key=lambda r: r["search_val_top1"]) if p.history else {}
        last = p.history[-1] if p.history else {}
        summary = {"best": best, "last": last, "wall_s": p.elapsed_s, "epochs": self.cfg.epochs}
        for hook in self.hooks:
            hook.on_fit_end(self, summary)
        return summary

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set: mean loss and top-1 (percent) of the batches seen."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.net.train()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(
            self.loader,
            total=self.steps_per_epoch,
            desc=f"{self.description} epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not self.ctx.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        device = self.ctx.device
        for step, (x, y, *extra) in enumerate(bar):  # extra: e.g. cached teacher logits (amc.training.distill)
            if step >= self.steps_per_epoch:
                break
            x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
            with self.autocast():
                logits = self.net(x)
                loss = self.criterion(logits, y, x, *(e.to(device, non_blocking=True) for e in extra))
            self.stepper.step(loss)
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], self.ctx)
        return {"train_loss": loss_sum / max(seen, 1), "train_top1": 100 * correct / max(seen, 1)}


def fit(
    model: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    run_dir: Path,
    ctx: Dist,
    tracker: Tracker | None = None,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    extra_params: Iterable[nn.Parameter] | None = None,
    metadata: dict[str, Any] | None = None,
    resume: bool = False,
    description: str = "train",
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """Train with the standard hooks: ``best.pt`` / ``last.pt``, ``metrics.jsonl``, ``summary.json`` and
    ``train_state.pt`` in ``run_dir`` (continued from with ``resume``), and the tracker; ``hooks`` add more."""
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    standard: list[Hook] = [Metrics(run_dir), Checkpoints(run_dir, metadata), ResumeState(run_dir, resume)]
    if tracker is not None:
        standard.insert(1, Tracking(tracker))
    trainer = Trainer(model, data, cfg, ctx, seed, loss_fn, extra_params, [*standard, *hooks], description)
    return trainer.fit()
