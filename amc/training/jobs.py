"""The training jobs behind ``amc.train`` and ``amc.finetune``: settings in, a trained network and its
summary out (checkpoints, metrics and tracking in the run dir come from the loop's hooks).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from amc.data import build_data
from amc.errors import ConfigError
from amc.io import write_json_atomic
from amc.models import load_checkpoint, load_weights, read_checkpoint
from amc.networks import (
    check_trained_on,
    first_conv_in_channels,
    load_model_for_data,
    model_and_data,
    user_checkpoint_options,
)
from amc.runtime.process import seed_everything, set_threads
from amc.settings import FinetuneConfig, TrainRunConfig
from amc.tracking import Tracker
from amc.training.distill import Distiller, with_teacher_logits
from amc.training.distributed import setup, teardown
from amc.training.loop import evaluate_split, fit

log = logging.getLogger(__name__)


def train_network(cfg: TrainRunConfig, run_dir: Path) -> dict:
    set_threads(cfg.threads)
    ctx = setup(cfg.device)
    seed_everything(cfg.seed)
    model, data = model_and_data(cfg.model, cfg.data)
    if cfg.init_checkpoint:
        load_weights(model, read_checkpoint(cfg.init_checkpoint)["state_dict"], str(cfg.init_checkpoint))
    tracker = None
    if ctx.is_main:
        tracker = Tracker(cfg.logger.kind, run_dir, asdict(cfg), cfg.logger.project, mode=cfg.logger.mode)
    meta = {"data": cfg.data.name, "image_size": data.image_size, "seed": cfg.seed, "job": "amc.train"}
    loss = None
    if cfg.teacher:  # knowledge distillation from scratch (e.g. HW7's StudentNet from a ResNet-18)
        teacher = load_model_for_data(cfg.teacher, cfg.teacher_model, cfg.data).to(ctx.device).eval()
        d = cfg.distill
        loss = Distiller(teacher, d.kind, d.temperature, d.alpha, cfg.train.label_smoothing)
        meta["teacher"] = str(cfg.teacher)
    summary = fit(
        model, data, cfg.train, run_dir, ctx, tracker, cfg.seed, loss_fn=loss, metadata=meta, resume=bool(cfg.resume)
    )
    if ctx.is_main:
        best = summary["best"]
        log.info(
            f"done: best search-val top-1 {best.get('search_val_top1', float('nan')):.2f} % "
            f"(test top-1 {best.get('test_top1', float('nan')):.2f} %) at epoch {best.get('epoch')}; "
            f"checkpoints in {run_dir} (best.pt, last.pt)"
        )
        tracker.finish()
    teardown(ctx)
    return summary


def num_classes_of(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features


def load_teacher(cfg: FinetuneConfig, student: nn.Module) -> nn.Module | None:
    if cfg.distill.kind == "ce":
        return None
    path = cfg.teacher or student.checkpoint_metadata.get("base_checkpoint")
    if not path:
        raise ConfigError("no teacher: pass teacher=PATH (the checkpoint records no base model)")
    teacher = load_model_for_data(str(path), cfg.model, cfg.data).eval()
    if num_classes_of(teacher) != num_classes_of(student):
        raise ConfigError(
            f"the teacher {path} predicts {num_classes_of(teacher)} classes, the student {num_classes_of(student)}"
        )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def use_teacher_logit_cache(cfg: FinetuneConfig) -> bool:
    """``auto``: cache when the teacher's logits cannot change between epochs (no augmentation, no hints)."""
    setting, kind = cfg.cache_teacher_logits, cfg.distill.kind
    deterministic = not cfg.data.augment
    if setting == "auto":
        return kind == "kd" and deterministic
    if setting and kind == "kd" and not deterministic:
        raise ConfigError("cache_teacher_logits=true needs data.augment=false (augmented images change every epoch)")
    return bool(setting) and kind == "kd"


def best_search_val_top1(summary: dict) -> float | None:
    """What a training optimises, returned to Hydra's sweepers: the best search-val top-1 (%)."""
    return (summary.get("best") or {}).get("search_val_top1")


def finetune_network(cfg: FinetuneConfig, run_dir: Path) -> dict:
    set_threads(cfg.threads)
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (the pruned model to fine-tune) is required")
    student = load_checkpoint(cfg.checkpoint, **user_checkpoint_options(cfg.model))
    check_trained_on(student, cfg.data, cfg.checkpoint)
    ctx = setup(cfg.device)
    seed_everything(cfg.seed)
    size = student.checkpoint_metadata.get("image_size")
    data = build_data(**{**asdict(cfg.data), "resize": size})
    if num_classes_of(student) != data.num_classes:
        raise ConfigError(
            f"{cfg.checkpoint} predicts {num_classes_of(student)} classes, {cfg.data.name} has {data.num_classes}"
        )
    teacher = load_teacher(cfg, student)
    student.to(ctx.device)
    d = cfg.distill
    loss = Distiller(
        teacher,
        d.kind,
        d.temperature,
        d.alpha,
        cfg.train.label_smoothing,
        student,
        d.hint_layers,
        d.hint_weight if d.hint_weight is not None else 1.0,
        (1, first_conv_in_channels(student), data.image_size, data.image_size),
    ).to(ctx.device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    if teacher is not None:  # the student trains channels_last; so should the teacher's forward passes run
        teacher.to(memory_format=memory_format)
    train_cfg = cfg.train
    tracker = None
    before = {}
    if ctx.is_main:
        tracker = Tracker(cfg.logger.kind, run_dir, asdict(cfg), cfg.logger.project, mode=cfg.logger.mode)
    if not cfg.resume:
        before = {
            split: evaluate_split(student, data.split(split), train_cfg, ctx)["top1"]
            for split in ("search-val", "test")
        }
        if ctx.is_main:
            log.info(
                f"before fine-tuning: search-val top-1 {before['search-val']:.2f} %, test top-1 {before['test']:.2f} %"
            )
    if use_teacher_logit_cache(cfg):
        t0 = time.perf_counter()
        train = with_teacher_logits(teacher, data.train, train_cfg.eval_batch_size, ctx.device, memory_format)
        data = dataclasses.replace(data, train=train)
        if ctx.is_main:
            log.info(f"teacher logits of {len(train):,} training images cached in {time.perf_counter() - t0:.1f} s")
    meta = {
        **student.checkpoint_metadata,
        "finetuned_from": str(cfg.checkpoint),
        "distill": d.kind,
        "image_size": data.image_size,
    }
    summary = fit(
        student,
        data,
        train_cfg,
        run_dir,
        ctx,
        tracker,
        seed=cfg.seed,
        loss_fn=loss,
        extra_params=loss.parameters(),
        metadata=meta,
        resume=bool(cfg.resume),
        description=f"finetune ({d.kind})",
    )
    if ctx.is_main:
        summary["before"] = before
        write_json_atomic(run_dir / "summary.json", summary)
        last = summary["last"]
        log.info(
            f"done: test top-1 {last.get('test_top1', float('nan')):.2f} % after {cfg.train.epochs} epochs "
            f"({d.kind}); checkpoints in {run_dir}"
        )
        tracker.finish()
    teardown(ctx)
    return summary
