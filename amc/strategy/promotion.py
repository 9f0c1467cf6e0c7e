"""Fidelity promotion: the search's best few strategies, fine-tuned briefly with KD, decide which one is exported.

A search ranks strategies by a cheap score; a short fine-tuning is the most faithful (and most expensive) one.
``promote.top_k=K promote.epochs=E`` rebuilds the K best distinct strategies as the export builds them, fine-tunes
each for E epochs (fractions of an epoch allowed) with KD from the base, and keeps the best on search-val after
fine-tuning. Each candidate's result is appended to ``promotion.jsonl`` as it finishes and its training resumes from
``promotion/episode_N/``, so a killed promotion continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm import tqdm

from amc.io import append_jsonl, read_jsonl, save_torch_atomic
from amc.settings import PromoteConfig
from amc.strategy.task import SearchTask
from amc.training.distill import Distiller, WithTeacherLogits, with_teacher_logits
from amc.training.distributed import Dist
from amc.training.loop import fit

RESULTS = "promotion.jsonl"

log = logging.getLogger(__name__)


# points of search-val top-1: a healthy short KD of a network already near its base moves it a few tenths either
# way; one that diverged loses several points
DIVERGED_DROP = 1.0


def diverged(result: dict[str, Any]) -> bool:
    """The fine-tuning ended more than ``DIVERGED_DROP`` below the cheap score it started from (search-val top-1):
    the KD diverged, and the result says more about the schedule than about the strategy."""
    return result["finetuned_search_val_top1"] < result["search_score"] - DIVERGED_DROP


def schedule(cfg: PromoteConfig, steps_per_epoch: int) -> tuple[int, int | None]:
    """(epochs, steps per epoch) of a fine-tuning ``cfg.epochs`` long, fractions spread evenly over whole epochs."""
    epochs = max(1, math.ceil(cfg.epochs))
    if cfg.epochs == epochs:
        return epochs, None
    return epochs, max(1, round(cfg.epochs / epochs * steps_per_epoch))


def cached_teacher_logits(
    teacher: nn.Module, train: Dataset, device: torch.device, path: Path | None
) -> WithTeacherLogits:
    """The teacher's logits on ``train``, from ``path`` when an earlier run of the same base and data left them."""
    if path is not None and path.is_file():
        logits = torch.load(path, weights_only=True)
        if isinstance(logits, torch.Tensor) and len(logits) == len(train):
            return WithTeacherLogits(train, logits)
    with_logits = with_teacher_logits(teacher, train, 500, device)
    if path is not None:
        save_torch_atomic(with_logits.logits, path)
    return with_logits


def promote(
    cfg: PromoteConfig,
    run_dir: Path,
    task: SearchTask,
    candidates: list[dict[str, Any]],
    build: Callable[[list[int]], nn.Module],
    device: torch.device,
    seed: int,
    metadata: dict[str, Any],
    logits_cache: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune each candidate row (``channels``, ``episode``); the summary with the winner first.

    :param build: channels -> the network as the export builds it (reconstructed, before fine-tuning).
    :param logits_cache: where the base's logits on the training images are kept for other searches of the same
        base and data (a study's runs share them): computed once, read back with ``weights_only``.
    """
    t0 = time.perf_counter()
    done = {r["episode"]: r for r in read_jsonl(run_dir / RESULTS)} if (run_dir / RESULTS).exists() else {}
    data = task.data
    teacher = task.base.to(device).eval()
    if len(done) < len(candidates):  # the teacher's logits, once for every candidate (no augmentation here)
        data = dataclasses.replace(data, train=cached_teacher_logits(teacher, data.train, device, logits_cache))
    steps = math.ceil(len(data.train) / cfg.train.batch_size)
    epochs, max_steps = schedule(cfg, steps)
    train_cfg = dataclasses.replace(cfg.train, epochs=epochs, max_steps_per_epoch=max_steps)
    for row in tqdm(candidates, desc=f"promotion ({cfg.epochs:g} epochs of KD each)", dynamic_ncols=True):
        if row["episode"] in done:
            continue
        folder = run_dir / "promotion" / f"episode_{row['episode']}"
        student = build(list(row["channels"])).to(device)
        loss = Distiller(teacher, "kd", cfg.temperature, cfg.alpha).to(device)
        summary = fit(
            student,
            data,
            train_cfg,
            folder,
            Dist(device=device),
            seed=seed,
            loss_fn=loss,
            metadata={**metadata, "promoted_episode": row["episode"]},
            resume=(folder / "train_state.pt").is_file(),
            description=f"promote episode {row['episode']}",
        )
        last = summary["last"]
        result = {
            "episode": row["episode"],
            "channels": list(row["channels"]),
            "search_score": row["accuracy"],
            "finetuned_search_val_top1": last["search_val_top1"],
            "finetuned_test_top1": last["test_top1"],
            "finetune_s": summary["wall_s"],
        }
        append_jsonl(run_dir / RESULTS, result)
        done[row["episode"]] = result
        if diverged(result):
            log.warning(
                f"promotion: episode {row['episode']} ended its fine-tuning at "
                f"{result['finetuned_search_val_top1']:.2f} % search-val, more than {DIVERGED_DROP:g} point below the "
                f"{result['search_score']:.2f} % it was scored at: the KD diverged (a lower promote.train.lr or "
                "promote.train.grad_clip_norm may steady it)"
            )
    results = [done[r["episode"]] for r in candidates]
    winner = max(results, key=lambda r: (r["finetuned_search_val_top1"], -r["episode"]))
    shutil.copyfile(run_dir / "promotion" / f"episode_{winner['episode']}" / "last.pt", run_dir / "finetuned.pt")
    return {
        "top_k": len(candidates),
        "epochs": cfg.epochs,
        "winner_episode": winner["episode"],
        "finetuned_search_val_top1": winner["finetuned_search_val_top1"],
        "finetuned_test_top1": winner["finetuned_test_top1"],
        "candidates": results,
        "cost_s": sum(r["finetune_s"] for r in results),
        "wall_s_this_invocation": time.perf_counter() - t0,
    }
