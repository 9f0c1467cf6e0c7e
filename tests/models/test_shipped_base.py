"""The pretrained base amc ships: the default search starts from it, it loads without running code, and it scores
what its entry says."""

from __future__ import annotations

import pytest
import torch

from amc.data import build_data, stack_dataset
from amc.models import load_checkpoint
from amc.models.pretrained import SHIPPED, shipped_base
from amc.training.base_model import shipped_base_for
from amc.training.evaluation import evaluate, tensor_batches
from tests.conftest import composed

FMNIST_MBV1 = shipped_base("mobilenet_v1", "fashion_mnist")


def test_the_default_search_starts_from_the_shipped_base():
    shipped = shipped_base_for(composed("search", "flops_budget=0.5"))
    assert shipped is not None and shipped is FMNIST_MBV1 and shipped.path.is_file()
    assert shipped.test_top1 >= 93.5  # the bar for the first run's base
    assert shipped.path.stat().st_size < 20 * 2**20  # what the README says it weighs, give or take


@pytest.mark.parametrize(
    "override",
    [
        "pretrained=false",
        "checkpoint=/elsewhere/base.pt",
        "model.kwargs.profile=small",
        "data=digits",
        "model=mobilenet_v2",
    ],
)
def test_any_other_run_keeps_its_own_base(override):
    assert shipped_base_for(composed("search", "flops_budget=0.5", override)) is None


def test_every_shipped_file_loads_with_weights_only():
    for base in SHIPPED:
        checkpoint = torch.load(base.path, map_location="cpu", weights_only=True)  # pickled code would raise
        model = load_checkpoint(base.path)
        assert checkpoint["arch"]["name"] == base.model and model.checkpoint_metadata["data"] == base.data


@pytest.mark.slow
def test_the_shipped_base_scores_its_stated_test_top1():
    data = build_data("fashion_mnist", augment=False)
    images, labels = stack_dataset(data.test)
    model = load_checkpoint(FMNIST_MBV1.path).eval()
    top1 = evaluate(model, tensor_batches(images, labels, 500))["top1"]
    assert top1 == pytest.approx(FMNIST_MBV1.test_top1, abs=0.011)  # the 10,000 test images, two decimals stated
