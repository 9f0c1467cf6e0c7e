"""``python -m amc.slim checkpoint=STUDENT data=food11``: HW7's network-slimming schedule.

Width × ``factor`` ``steps`` times; after each step the slimmer student is fine-tuned for
``train.epochs`` epochs with a *fresh* optimizer (the course's sample code kept the optimizer of
the original network, so its fine-tuning never touched the new weights).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import run_dir_of, save_resolved_config, seed_everything, set_threads, to_plain
from amc.data import build_data
from amc.errors import ConfigError, user_errors_exit
from amc.hw7.slimming import slim_student
from amc.io import write_json_atomic
from amc.pruning.cost import count_params
from amc.tracking import Tracker
from amc.training.distributed import setup
from amc.training.loop import TrainConfig, evaluate_split, fit
from models import load_checkpoint, save_checkpoint


def slim(cfg: DictConfig) -> list[dict]:
    set_threads(cfg.get("threads"))
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (a trained hw7_student) is required")
    model = load_checkpoint(cfg.checkpoint)
    if model.arch["name"] != "hw7_student":
        raise ConfigError(f"network slimming here follows HW7 and needs an hw7_student, got {model.arch['name']}")
    ctx = setup(cfg.device)
    seed_everything(cfg.seed)
    data = build_data(**to_plain(cfg.data))
    run_dir = run_dir_of(cfg)
    save_resolved_config(cfg, run_dir)
    tracker = Tracker(cfg.logger.kind, run_dir, to_plain(cfg), cfg.logger.project, mode=cfg.logger.mode)
    train_cfg = TrainConfig.from_mapping({**to_plain(cfg.train), "seed": cfg.seed})
    size = (1, data.in_channels, data.image_size, data.image_size)
    width = float(model.arch["kwargs"].get("width_mult", 1.0))
    rows = []
    for step in range(1, cfg.steps + 1):
        width *= cfg.factor
        model = slim_student(model.cpu(), width, size)
        before = evaluate_split(model.to(ctx.device), data.test, train_cfg, ctx)["top1"]
        step_dir = run_dir / f"step{step}"
        step_dir.mkdir(exist_ok=True)
        summary = fit(
            model,
            data,
            train_cfg,
            step_dir,
            ctx,
            tracker,
            metadata={"width_mult": width},
            description=f"slim {step}/{cfg.steps}",
        )
        model = load_checkpoint(step_dir / "best.pt")
        row = {
            "step": step,
            "width_mult": round(width, 4),
            "params": count_params(model),
            "test_top1_after_slimming": before,
            "test_top1": summary["best"]["test_top1"],
            "search_val_top1": summary["best"]["search_val_top1"],
        }
        rows.append(row)
        print(
            f"step {step}: width {width:.4f}, {row['params']:,} params, test top-1 {before:.2f} % after slimming, "
            f"{row['test_top1']:.2f} % after {cfg.train.epochs} epochs of fine-tuning"
        )
    save_checkpoint(model, run_dir / "slimmed.pt", image_size=data.image_size)
    write_json_atomic(run_dir / "slimming.json", rows)
    tracker.finish()
    return rows


@hydra.main(config_path="../conf", config_name="slim", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    slim(cfg)


if __name__ == "__main__":
    main()
