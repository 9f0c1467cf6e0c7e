"""Fidelity promotion in process: each candidate fine-tuned once, the winner kept, a diverged fine-tuning said."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from amc.data import build_data
from amc.settings import PromoteConfig, TrainConfig
from amc.strategy.promotion import promote
from amc.strategy.tiny import tiny_task


def test_a_candidate_whose_finetuning_ends_below_its_score_is_reported_as_diverged(tmp_path: Path, caplog):
    scorer, wall = tiny_task()
    widths, small = list(scorer.structure.widths), list(wall.minimum)
    task = SimpleNamespace(data=build_data("digits", search_val_size=300, augment=False), base=scorer.model)
    train = TrainConfig(
        epochs=1, batch_size=64, eval_batch_size=300, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True,
        weight_decay=0.0, warmup_epochs=0.0, label_smoothing=0.0, num_workers=0, max_steps_per_epoch=None,
        channels_last=False, grad_clip_norm=None,
    )  # fmt: skip
    cfg = PromoteConfig(top_k=2, epochs=0.1, temperature=4.0, alpha=0.9, train=train)
    # the scores the candidates "started from": none can end below 0 %, and none reaches 100 %
    candidates = [
        {"episode": 1, "channels": widths, "accuracy": 0.0},
        {"episode": 2, "channels": small, "accuracy": 100.0},
    ]
    with caplog.at_level(logging.WARNING, logger="amc.strategy.promotion"):
        summary = promote(
            cfg, tmp_path, task, candidates, lambda c: scorer.build(c)[0], torch.device("cpu"), 0, {}, None
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "episode 2 ended its fine-tuning" in warnings[0] and "diverged" in warnings[0]
    rows = [json.loads(line) for line in (tmp_path / "promotion.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in rows] == [1, 2]
    best = max(rows, key=lambda r: (r["finetuned_search_val_top1"], -r["episode"]))
    assert summary["winner_episode"] == best["episode"] and (tmp_path / "finetuned.pt").is_file()
