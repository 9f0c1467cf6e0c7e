"""``python -m amc.train``: train a base model (the network AMC later compresses)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import (
    load_model_for_data,
    model_and_data,
    run_dir_of,
    save_resolved_config,
    seed_everything,
    set_threads,
    to_plain,
)
from amc.errors import user_errors_exit
from amc.tracking import Tracker
from amc.training.distill import Distiller
from amc.training.distributed import setup, teardown
from amc.training.loop import TrainConfig, fit
from models import load_weights, read_checkpoint


def train(cfg: DictConfig) -> dict:
    set_threads(cfg.get("threads"))
    ctx = setup(cfg.device)
    seed_everything(cfg.seed)
    model, data = model_and_data(cfg.model, cfg.data)
    if cfg.get("init_checkpoint"):
        load_weights(model, read_checkpoint(cfg.init_checkpoint)["state_dict"], str(cfg.init_checkpoint))
    run_dir = run_dir_of(cfg)
    tracker = None
    if ctx.is_main:
        save_resolved_config(cfg, run_dir)
        tracker = Tracker(cfg.logger.kind, run_dir, to_plain(cfg), cfg.logger.project, mode=cfg.logger.mode)
    train_cfg = TrainConfig.from_mapping({**to_plain(cfg.train), "seed": cfg.seed})
    meta = {"data": cfg.data.name, "image_size": data.image_size, "seed": cfg.seed, "job": "amc.train"}
    loss = None
    if cfg.get("teacher"):  # knowledge distillation from scratch (e.g. HW7's StudentNet from a ResNet-18)
        teacher = load_model_for_data(cfg.teacher, cfg.teacher_model, cfg.data).to(ctx.device).eval()
        d = cfg.distill
        loss = Distiller(teacher, d.kind, d.temperature, d.alpha, cfg.train.label_smoothing)
        meta["teacher"] = str(cfg.teacher)
    summary = fit(
        model, data, train_cfg, run_dir, ctx, tracker, loss_fn=loss, metadata=meta, resume=bool(cfg.get("resume"))
    )
    if ctx.is_main:
        best = summary["best"]
        print(
            f"done: best search-val top-1 {best.get('search_val_top1', float('nan')):.2f} % "
            f"(test top-1 {best.get('test_top1', float('nan')):.2f} %) at epoch {best.get('epoch')}; "
            f"checkpoints in {run_dir} (best.pt, last.pt)"
        )
        tracker.finish()
    teardown(ctx)
    return summary


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
