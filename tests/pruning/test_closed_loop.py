"""Closed-loop reconstruction: the staged walk gives exactly the weights of refitting from the input, and every
consumer is refit on the inputs the sliced network really feeds it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from amc.pruning.apply import keep_indices
from amc.pruning.reconstruction import closed_loop_overrides, collect_stats, solve
from amc.pruning.reconstruction.closed_loop import _StagedWalk
from amc.pruning.slicing import slice_model
from amc.pruning.structure import analyse
from tests.pruning.test_pruning import CASES, random_channels, randomised

# every network walked with room for its activations; the 50 kB case (no room: the walk must not start) on one
# (ResNet-18's 4,608-column solves make its walk the slowest test outside the slow set)
WALKS = [pytest.param(name, 64, marks=[pytest.mark.slow] if name == "resnet18" else []) for name in sorted(CASES)]
WALKS += [("hw7_student", 0.05)]


@pytest.mark.parametrize(("name", "memory_mb"), WALKS)
def test_walking_from_stored_activations_gives_the_same_weights(name, memory_mb, monkeypatch):
    model, size = randomised(name)
    structure = analyse(model, size)
    keep = keep_indices(model, structure, random_channels(structure, torch.Generator().manual_seed(1)))
    images = torch.randn(20, *size[1:])
    advanced = []
    advance = _StagedWalk.advance

    def counting_advance(self: _StagedWalk, before: str) -> None:
        stage = self.stage
        advance(self, before)
        advanced.append(self.stage > stage)

    monkeypatch.setattr(_StagedWalk, "advance", counting_advance)
    walked = closed_loop_overrides(model, structure, keep, images, 3, seed=5, batch_size=8, memory_mb=memory_mb)
    from_input = closed_loop_overrides(model, structure, keep, images, 3, seed=5, batch_size=8, memory_mb=0)
    assert walked.keys() == from_input.keys() and walked
    assert all(torch.equal(walked[n], from_input[n]) for n in walked)
    if memory_mb == 64:  # the walk really started later refits from stored activations
        assert any(advanced)
    else:  # 50 kB holds no cut of 20 images: every refit runs from the input, as without a walk
        assert advanced and not any(advanced)


class ThreeConvs(nn.Module):
    """conv1 → conv2 (3×3: 72 input columns) → conv3 (1×1: 8 columns)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x))))).mean((2, 3))


@pytest.mark.parametrize("memory_mb", [0, 64])
def test_a_consumer_left_sliced_feeds_the_next_refit_what_the_sliced_network_does(memory_mb):
    torch.manual_seed(0)
    model = ThreeConvs().eval()
    structure = analyse(model, (1, 3, 8, 8))
    keep = keep_indices(model, structure, [5, 6])
    images = torch.randn(30, 3, 8, 8)
    # conv2's 72 input columns are over the limit: it stays sliced, and only conv3 is refit
    overrides = closed_loop_overrides(model, structure, keep, images, 4, 0, 10, max_columns=40, memory_mb=memory_mb)
    assert set(overrides) == {"conv3"}
    sliced = slice_model(model, structure, keep)  # conv2 sliced as the export leaves it, conv3 not yet refit
    stats = collect_stats(model, {"conv3": model.conv3}, images, 4, 0, 10, source=sliced)["conv3"]
    expected = solve(stats, torch.arange(len(keep[1])))
    torch.testing.assert_close(overrides["conv3"][:, keep[1]], expected.view(4, -1, 1, 1), rtol=1e-5, atol=1e-6)
