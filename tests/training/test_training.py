"""The one training loop: gradient clipping bounds each update."""

from __future__ import annotations

import dataclasses

import torch

from amc import models
from amc.data import build_data
from amc.training.distributed import Dist
from amc.training.loop import fit
from tests.conftest import composed


def test_gradient_clipping_bounds_the_step(tmp_path):
    torch.manual_seed(0)
    data = build_data("digits", search_val_size=100, augment=False)
    moved = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)  # the same initial weights for both runs
        model = models.create_model("mobilenet_v1", cfg=[16], in_planes=8, in_channels=1, num_classes=10)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        cfg = dataclasses.replace(
            composed("train").train,
            epochs=1,
            lr=1.0,
            momentum=0.0,
            nesterov=False,
            weight_decay=0.0,
            max_steps_per_epoch=1,
            grad_clip_norm=clip,
        )
        fit(model, data, cfg, tmp_path / str(clip), Dist(device=torch.device("cpu")))
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moved[clip] = float((after - before).norm())
    assert moved[1e-3] <= 1e-3 * 1.0001  # one SGD step of lr 1 with the gradient norm clipped to 1e-3
    assert moved[None] > 10 * moved[1e-3]


def test_tracker_resumes_the_same_wandb_run_offline(tmp_path, monkeypatch):
    from amc.tracking import Tracker, has_wandb_key

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    (tmp_path / ".netrc").write_text("machine example.org login me password secret\n")
    assert not has_wandb_key()  # an unrelated ~/.netrc does not switch tracking online
    first = Tracker("wandb", tmp_path / "run", {"a": 1})
    assert first.run.settings.mode == "offline"
    run_id = first.run.id
    first.finish()
    again = Tracker("wandb", tmp_path / "run", {"a": 1})
    assert again.run.id == run_id == (tmp_path / "run" / "wandb_run_id").read_text()
    again.finish()
