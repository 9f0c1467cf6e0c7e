"""What the training loop does around each epoch besides training: one hook per job.

``fit`` wires the standard ones (resume state, checkpoints, metrics, tracking); a caller adds its own
by subclassing :class:`Hook` (e.g. slimming could prune between epochs) without touching the loop.
Every hook that writes files does so on the main rank only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from amc.io import append_jsonl, save_torch_atomic, write_json_atomic
from amc.models import save_checkpoint
from amc.tracking import Tracker

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from amc.training.loop import Trainer

STATE_FILE = "train_state.pt"


class Hook:
    """Called by :class:`amc.training.loop.Trainer`; every method is optional."""

    def on_fit_start(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        pass


class ResumeState(Hook):
    """Saves everything the loop needs after each epoch (``train_state.pt``) and, with ``resume``,
    continues from it: model, optimizer, scheduler, extra parameters, progress and the RNG."""

    def __init__(self, run_dir: Path, resume: bool) -> None:
        self.path, self.resume = run_dir / STATE_FILE, resume

    def on_fit_start(self, trainer: Trainer) -> None:
        if not (self.resume and self.path.is_file()):
            return
        state = torch.load(self.path, map_location=trainer.ctx.device, weights_only=True)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        for p, saved in zip(trainer.extra_params, state.get("extra_params", []), strict=False):
            p.data.copy_(saved)
        trainer.progress.epoch = state["epoch"]
        trainer.progress.best_top1 = state["best_top1"]
        trainer.progress.history = state["history"]
        trainer.progress.elapsed_s = state["elapsed_s"]
        torch.set_rng_state(state["rng"])
        if trainer.ctx.is_main:
            log.info(
                f"resuming {trainer.description} from epoch {state['epoch']} of {trainer.cfg.epochs} "
                f"({self.path.parent})"
            )

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if not trainer.ctx.is_main:
            return
        p = trainer.progress
        state = {
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "extra_params": [q.detach().cpu() for q in trainer.extra_params],
            "epoch": p.epoch,
            "best_top1": p.best_top1,
            "history": p.history,
            "elapsed_s": p.elapsed_s,
            "rng": torch.get_rng_state(),
            "config": asdict(trainer.cfg),
        }
        save_torch_atomic(state, self.path)


class Checkpoints(Hook):
    """``best.pt`` (by search-val top-1) and ``last.pt``, each carrying ``metadata``."""

    def __init__(self, run_dir: Path, metadata: dict[str, Any] | None = None) -> None:
        self.run_dir, self.metadata = run_dir, dict(metadata or {})

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if not trainer.ctx.is_main:
            return
        info = {**self.metadata, "epoch": row["epoch"], "search_val_top1": row["search_val_top1"]}
        info["test_top1"] = row["test_top1"]
        if trainer.progress.improved:
            save_checkpoint(trainer.model, self.run_dir / "best.pt", **info)
        save_checkpoint(trainer.model, self.run_dir / "last.pt", **info)


class Metrics(Hook):
    """One printed line and one ``metrics.jsonl`` row per epoch; ``summary.json`` at the end."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if not trainer.ctx.is_main:
            return
        log.info(
            f"{trainer.description} epoch {row['epoch']}/{trainer.cfg.epochs}: train loss {row['train_loss']:.4f}, "
            f"search-val top-1 {row['search_val_top1']:.2f} %, test top-1 {row['test_top1']:.2f} %, "
            f"{row['elapsed_s']:.0f} s so far"
        )
        append_jsonl(self.run_dir / "metrics.jsonl", row)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if trainer.ctx.is_main:
            write_json_atomic(self.run_dir / "summary.json", summary)


class Tracking(Hook):
    """Each epoch's row and the best accuracies to the run's tracker (wandb or none)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.ctx.is_main:
            self.tracker.log(row, step=row["epoch"])

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if trainer.ctx.is_main:
            best = summary["best"]
            self.tracker.summary(
                {"best_search_val_top1": best.get("search_val_top1"), "best_test_top1": best.get("test_top1")}
            )
