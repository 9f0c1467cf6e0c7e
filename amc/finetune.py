"""``python -m amc.finetune checkpoint=PRUNED``: recover a pruned network's accuracy, by distillation by default.

The teacher defaults to the base checkpoint recorded in the pruned checkpoint (by ``amc.search`` or
``amc.export``); ``teacher=PATH`` takes any checkpoint of a registered model. Runs under
``torchrun --nproc_per_node=N -m amc.finetune ...`` as DistributedDataParallel.
"""

from __future__ import annotations

import dataclasses
import time

import hydra
import torch
import torch.nn as nn
from omegaconf import DictConfig

from amc.config import (
    first_conv_in_channels,
    load_model_for_data,
    run_dir_of,
    save_resolved_config,
    seed_everything,
    set_threads,
    to_plain,
)
from amc.data import build_data
from amc.errors import ConfigError, user_errors_exit
from amc.io import write_json_atomic
from amc.tracking import Tracker
from amc.training.distill import Distiller, with_teacher_logits
from amc.training.distributed import setup, teardown
from amc.training.loop import TrainConfig, evaluate_split, fit
from models import load_checkpoint


def num_classes_of(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features


def load_teacher(cfg: DictConfig, student: nn.Module) -> nn.Module | None:
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


def use_teacher_logit_cache(cfg: DictConfig) -> bool:
    """``auto``: cache when the teacher's logits cannot change between epochs (no augmentation, no hints)."""
    setting, kind = cfg.get("cache_teacher_logits", "auto"), cfg.distill.kind
    deterministic = not cfg.data.get("augment", True)
    if setting == "auto":
        return kind == "kd" and deterministic
    if setting and kind == "kd" and not deterministic:
        raise ConfigError("cache_teacher_logits=true needs data.augment=false (augmented images change every epoch)")
    return bool(setting) and kind == "kd"


def finetune(cfg: DictConfig) -> dict:
    set_threads(cfg.get("threads"))
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (the pruned model to fine-tune) is required")
    student = load_checkpoint(cfg.checkpoint)
    ctx = setup(cfg.device)
    seed_everything(cfg.seed)
    size = student.checkpoint_metadata.get("image_size")
    data = build_data(**{**to_plain(cfg.data), "resize": size})
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
        to_plain(d.get("hint_layers")),
        d.get("hint_weight", 1.0),
        (1, first_conv_in_channels(student), data.image_size, data.image_size),
    ).to(ctx.device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    if teacher is not None:  # the student trains channels_last; so should the teacher's forward passes run
        teacher.to(memory_format=memory_format)
    run_dir = run_dir_of(cfg)
    train_cfg = TrainConfig.from_mapping({**to_plain(cfg.train), "seed": cfg.seed})
    tracker = None
    before = {}
    if ctx.is_main:
        save_resolved_config(cfg, run_dir)
        tracker = Tracker(cfg.logger.kind, run_dir, to_plain(cfg), cfg.logger.project, mode=cfg.logger.mode)
    if not cfg.get("resume"):
        before = {
            split: evaluate_split(student, data.split(split), train_cfg, ctx)["top1"]
            for split in ("search-val", "test")
        }
        if ctx.is_main:
            print(
                f"before fine-tuning: search-val top-1 {before['search-val']:.2f} %, test top-1 {before['test']:.2f} %"
            )
    if use_teacher_logit_cache(cfg):
        t0 = time.perf_counter()
        train = with_teacher_logits(teacher, data.train, train_cfg.eval_batch_size, ctx.device, memory_format)
        data = dataclasses.replace(data, train=train)
        if ctx.is_main:
            print(f"teacher logits of {len(train):,} training images cached in {time.perf_counter() - t0:.1f} s")
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
        loss_fn=loss,
        extra_params=loss.parameters(),
        metadata=meta,
        resume=bool(cfg.get("resume")),
        description=f"finetune ({d.kind})",
    )
    if ctx.is_main:
        summary["before"] = before
        write_json_atomic(run_dir / "summary.json", summary)
        last = summary["last"]
        print(
            f"done: test top-1 {last.get('test_top1', float('nan')):.2f} % after {cfg.train.epochs} epochs "
            f"({d.kind}); checkpoints in {run_dir}"
        )
        tracker.finish()
    teardown(ctx)
    return summary


@hydra.main(config_path="../conf", config_name="finetune", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    finetune(cfg)


if __name__ == "__main__":
    main()
