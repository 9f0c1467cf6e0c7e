"""The pruning engine on every registered model: exact costs, masking equivalence, slicing, reconstruction."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

from amc import models
from amc.errors import ConfigError
from amc.pruning.apply import keep_indices, prune_model
from amc.pruning.counting import profile
from amc.pruning.reconstruction import OpenLoopReconstructor, collect_stats, sample_rows, solve
from amc.pruning.slicing import channel_scores, masked_inputs, select_channels
from amc.pruning.structure import analyse

CASES = {
    "mobilenet_v1": ({"num_classes": 10, "small_input": True}, (1, 3, 32, 32)),
    "mobilenet_v2": ({"num_classes": 10, "small_input": True}, (1, 3, 32, 32)),
    "hw7_student": ({}, (1, 3, 64, 64)),
    "resnet18": ({"num_classes": 10, "small_input": True}, (1, 3, 32, 32)),
}


def randomised(name: str, **overrides: Any) -> tuple[nn.Module, tuple[int, ...]]:
    """A model with non-trivial BN statistics, so a wrong channel mapping shows in the outputs."""
    kwargs, size = CASES[name]
    torch.manual_seed(0)
    model = models.create_model(name, **kwargs, **overrides)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval(), size


def random_channels(structure, generator: torch.Generator) -> list[int]:
    ratios = torch.rand(len(structure.points), generator=generator).clamp_min(0.05).tolist()
    return [max(1, int(w * r)) for w, r in zip(structure.widths, ratios, strict=True)]


def test_every_registered_model_has_a_structure():
    assert set(models.list_models()) <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_keeping_every_channel_changes_nothing(name):
    model, size = randomised(name)
    structure = analyse(model, size)
    same = prune_model(model, structure, structure.widths, reconstruction="none").eval()
    x = torch.randn(2, *size[1:])
    assert torch.equal(same(x), model(x))


@pytest.mark.parametrize("name", sorted(CASES))
def test_pruned_equals_masked_original_and_costs_are_exact(name):
    model, size = randomised(name)
    structure = analyse(model, size)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, *size[1:])
    for _ in range(3):
        channels = random_channels(structure, generator)
        keep = keep_indices(model, structure, channels)
        small = prune_model(model, structure, channels, reconstruction="none").eval()
        with torch.no_grad(), masked_inputs(model, structure, keep):
            want = model(x)
        with torch.no_grad():
            got = small(x)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
        report = profile(small, size)
        assert report.macs == structure.macs(channels)
        assert report.params == structure.params(channels)
        assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_residual_networks_prune_at_random_ratios(name, tmp_path):
    model, size = randomised(name)
    structure = analyse(model, size)
    generator = torch.Generator().manual_seed(2)
    for i in range(5):
        channels = random_channels(structure, generator)
        small = prune_model(model, structure, channels, reconstruction="none").eval()
        out = small(torch.randn(2, *size[1:]))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        path = models.save_checkpoint(small, tmp_path / f"p{i}.pt")
        back = models.load_checkpoint(path).eval()
        x = torch.randn(1, *size[1:])
        assert torch.equal(back(x), small(x))


def test_mobilenet_v1_reference_channel_list_gives_the_0_5flops_profile():
    model = models.create_model("mobilenet_v1")
    structure = analyse(model, (1, 3, 224, 224))
    channels = [24, 48, 96, 80, 192, 200, 328, 352, 368, 360, 328, 400, 736, 752]
    assert structure.macs(channels) == 293_870_000 and structure.params(channels) == 2_408_232
    small = prune_model(model, structure, channels, reconstruction="none")
    ref = models.create_model("mobilenet_v1", profile="0.5flops")
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("method", ["l1", "l2", "bn_gamma", "random"])
def test_channel_selection_methods(method):
    model, size = randomised("mobilenet_v1")
    structure = analyse(model, size)
    point = structure.points[3]
    scores = channel_scores(model, point, method, torch.Generator().manual_seed(0))
    kept = select_channels(scores, 10)
    assert len(kept) == 10 and kept.unique().numel() == 10 and torch.all(kept[:-1] < kept[1:])
    assert float(scores[kept].min()) >= float(scores[~torch.isin(torch.arange(len(scores)), kept)].max())


def test_l1_ranks_by_the_consumers_input_weights():
    model, size = randomised("mobilenet_v1")
    structure = analyse(model, size)
    point = structure.points[2]
    consumer = dict(model.named_modules())[point.consumers[0]]
    with torch.no_grad():
        consumer.weight[:, 5] = 0  # an input channel nobody reads is the first to go
    assert 5 not in select_channels(channel_scores(model, point, "l1"), point.channels - 1).tolist()


def test_bad_channel_lists_are_clear_errors():
    model, size = randomised("mobilenet_v1")
    structure = analyse(model, size)
    with pytest.raises(ConfigError, match="decision points"):
        keep_indices(model, structure, [8] * 3)
    with pytest.raises(ConfigError, match="cannot keep"):
        keep_indices(model, structure, [structure.widths[0] + 1, *structure.widths[1:]])


def test_least_squares_recovers_a_kxk_conv_exactly():
    """If the target really is a conv of the kept channels, least squares must find its weights."""
    torch.manual_seed(0)
    layer = nn.Conv2d(6, 4, 3, padding=1, bias=True)
    kept = torch.tensor([0, 2, 3, 5])
    with torch.no_grad():
        layer.weight[:, [1, 4]] = 0  # the truth uses only the kept inputs
    wrapper = nn.Sequential(layer)
    stats = collect_stats(wrapper, {"0": layer}, torch.randn(20, 6, 8, 8), points=16, seed=0)
    w = solve(stats["0"], kept).reshape(4, 4, 3, 3)
    assert torch.allclose(w, layer.weight[:, kept].detach(), atol=1e-4)


def test_calibration_passes_stop_after_the_last_layer_they_need():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    tail_calls = []
    net[4].register_forward_hook(lambda *args: tail_calls.append(1))
    images = torch.randn(10, 3, 5, 5)
    stats = collect_stats(net, {"2": net[2]}, images, points=5, seed=3, batch_size=4)["2"]
    assert not tail_calls  # nothing after the consumer runs
    gram = torch.zeros_like(stats.gram)
    with torch.no_grad():
        for batch_no, start in enumerate(range(0, 10, 4)):
            x = net[1](net[0](images[start : start + 4]))
            generator = torch.Generator().manual_seed(3 * 1_000_003 + batch_no)
            xs, _ = sample_rows(net[2], x, net[2](x), 5, generator)
            gram += (xs.T @ xs).double()
    assert torch.allclose(stats.gram, gram) and stats.rows == 50


def test_dead_channels_give_finite_reconstruction():
    model, size = randomised("mobilenet_v1")
    with torch.no_grad():
        model.features[2][4].weight.zero_()  # a BN with gamma 0 and beta<=0 after ReLU: dead channels
        model.features[2][4].bias.fill_(-1)
    structure = analyse(model, size)
    images = torch.randn(16, *size[1:])
    channels = [max(1, w // 2) for w in structure.widths]
    keep = keep_indices(model, structure, channels)
    overrides = OpenLoopReconstructor(model, structure, images, 4).overrides(keep)
    assert overrides and all(torch.isfinite(w).all() for w in overrides.values())


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_reconstruction_brings_outputs_closer_on_calibration_like_data(mode):
    model, size = randomised("hw7_student")
    structure = analyse(model, size)
    torch.manual_seed(3)
    images = torch.rand(48, *size[1:])
    channels = [max(1, int(w * 0.6)) for w in structure.widths]
    plain = prune_model(model, structure, channels, reconstruction="none").eval()
    fixed = prune_model(
        model, structure, channels, reconstruction=mode, calibration_images=images, points_per_image=16
    ).eval()
    x = torch.rand(16, *size[1:])
    with torch.no_grad():
        ref = model(x)
        assert (fixed(x) - ref).pow(2).mean() < 0.5 * (plain(x) - ref).pow(2).mean()


def test_least_squares_recovers_a_linear_consumer_exactly():
    """Linear consumer, dropped inputs that are combinations of kept ones: the refit reproduces the outputs."""
    generator = torch.Generator().manual_seed(0)
    layer = nn.Linear(6, 3)
    kept_x = torch.randn(200, 4, generator=generator)
    x = torch.cat([kept_x, kept_x[:, :2] @ torch.randn(2, 2, generator=generator)], dim=1)  # inputs 4, 5 redundant
    with torch.no_grad():
        y = layer(x)
    xs, ys = sample_rows(layer, x, y, points=1, generator=generator)
    from amc.pruning.reconstruction import ConsumerStats

    stats = ConsumerStats((xs.T @ xs).double(), (xs.T @ ys).double(), 1, len(xs))
    w = solve(stats, torch.arange(4))
    torch.testing.assert_close(kept_x @ w.T + layer.bias.detach(), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
def test_folding_batchnorm_leaves_the_network_unchanged(name):
    import copy

    from amc.pruning.fusion import fold_batchnorms

    model, size = randomised(name)
    x = torch.randn(3, *size[1:])
    folded = fold_batchnorms(copy.deepcopy(model))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # every one, not just some
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_open_loop_solves_are_reused_for_the_same_kept_channels_and_bounded_in_memory():
    model, size = randomised("mobilenet_v1")
    structure = analyse(model, size)
    images = torch.randn(16, *size[1:])
    reconstructor = OpenLoopReconstructor(model, structure, images, 4)
    generator = torch.Generator().manual_seed(1)
    strategies = [random_channels(structure, generator) for _ in range(3)]
    keeps = [keep_indices(model, structure, c) for c in strategies]
    first = [reconstructor.overrides(k) for k in keeps]
    solved, hits = reconstructor.solved.misses, reconstructor.solved.hits
    again = reconstructor.overrides(keeps[0])
    assert reconstructor.solved.misses == solved and reconstructor.solved.hits == hits + len(again)  # none solved again
    fresh = OpenLoopReconstructor(model, structure, images, 4)
    fresh.solved.budget_bytes = 0  # stores nothing: every call solves
    for keep, weights in zip(keeps, first, strict=True):
        expected = fresh.overrides(keep)
        assert weights.keys() == expected.keys()
        assert all(torch.equal(weights[n], expected[n]) for n in expected)  # the strategy's own solve, not another's
    assert fresh.solved.hits == 0 and not fresh.solved.entries
    largest = max(w.numel() * w.element_size() for w in first[0].values())
    small = OpenLoopReconstructor(model, structure, images, 4)
    small.solved.budget_bytes = 2 * largest
    for keep in keeps:
        small.overrides(keep)
    assert 0 < small.solved.held_bytes <= 2 * largest
    assert small.solved.held_bytes == sum(w.numel() * w.element_size() for w in small.solved.entries.values())
