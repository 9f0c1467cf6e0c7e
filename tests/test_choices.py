"""Setting choices are Enums (refused while composing: tests/strategy/test_search_inputs.py) that behave as the
plain strings a user typed, and never make a saved file unloadable with weights_only=True."""

from __future__ import annotations

import json

import torch

from amc import models
from amc.choices import Evaluator, Optimizer, Selection
from amc.io import save_torch_atomic


def test_a_choice_is_the_string_it_was_typed_as():
    chosen = Evaluator["lsq+adabn"]
    assert chosen == "lsq+adabn" and f"{chosen}" == "lsq+adabn" and str(chosen) == "lsq+adabn"
    assert {"lsq+adabn": 1}[chosen] == 1 and json.dumps({"score": chosen}) == '{"score": "lsq+adabn"}'


def test_files_that_record_a_choice_load_with_weights_only(tmp_path):
    model = models.create_model("mobilenet_v1", cfg=[16], in_planes=8, in_channels=1, num_classes=10)
    models.save_checkpoint(model, tmp_path / "net.pt", selection=Selection["lsq"], trail=[Selection["l1"]])
    loaded = models.load_checkpoint(tmp_path / "net.pt")
    assert loaded.checkpoint_metadata["selection"] == "lsq"
    assert type(loaded.checkpoint_metadata["trail"][0]) is str
    # a training run's resume state records its settings
    save_torch_atomic({"config": {"optimizer": Optimizer["sgd"], "steps": (Selection["l2"],)}}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["config"] == {"optimizer": "sgd", "steps": ("l2",)} and type(state["config"]["optimizer"]) is str
