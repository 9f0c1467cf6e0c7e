"""Evaluators (score=lsq|adabn|lsq+adabn): BN statistics recomputed exactly, the base untouched, and the prefix
cache bit-identical to full evaluation with every evaluator."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from amc.pruning.bn_recalibration import recalibrate_batchnorms
from amc.pruning.structure import analyse
from amc.strategy.scoring import SCORES, ScorerSettings, ScoringImages, StrategyScorer
from tests.pruning.test_pruning import CASES, random_channels, randomised


def test_recalibrated_statistics_are_the_images_own():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(4, 2, 1)).eval()
    images = torch.randn(40, 3, 6, 6)
    recalibrate_batchnorms(net, images, batch_size=10)
    features = net[0](images)
    # the average of four equal-sized batches' means and unbiased variances
    batches = features.split(10)
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(net[1].running_mean, mean, atol=1e-6)
    assert torch.allclose(net[1].running_var, var, atol=1e-5)
    assert not any(m.training for m in net.modules()) and net[1].momentum == 0.1  # eval mode, momentum back


def test_recalibrating_a_copy_that_shares_tensors_leaves_the_original_as_it_was():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    # a copy of the module tree sharing every tensor, as the search's sliced copy of the base does
    twin = copy.deepcopy(net, {id(t): t for t in [*net.parameters(), *net.buffers()]})
    assert twin[1].running_mean is net[1].running_mean
    before = net[1].running_mean.clone()
    recalibrate_batchnorms(twin, torch.randn(8, 3, 5, 5) + 3)
    assert torch.equal(net[1].running_mean, before)
    assert not torch.equal(twin[1].running_mean, before)


def scorer(name: str, score: str, cache_mb: float, kd_steps: int = 3) -> StrategyScorer:
    model, size = randomised(name)
    generator = torch.Generator().manual_seed(1)
    val_x = torch.randn(12, *size[1:], generator=generator)
    val_y = torch.randint(0, 10, (12,), generator=generator)
    calib = torch.randn(6, *size[1:], generator=generator)
    recal = torch.randn(10, *size[1:], generator=generator)
    distill = torch.randn(kd_steps * 4, *size[1:], generator=generator)
    settings = ScorerSettings(
        score=score, points_per_image=3, batch_size=5, prefix_cache_mb=cache_mb, kd_steps=kd_steps, kd_batch_size=4
    )
    images = ScoringImages(val_x, val_y, calib, recal, distill=distill)
    return StrategyScorer(model, analyse(model, size), images, settings)


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("name", [n for n in sorted(CASES) if n != "resnet18"])
def test_every_evaluator_scores_alike_with_and_without_the_prefix_cache(name, score):
    plain, cached = scorer(name, score, 0), scorer(name, score, 64)
    base_state = {k: v.clone() for k, v in plain.model.state_dict().items()}
    generator = torch.Generator().manual_seed(2)
    first, other = random_channels(plain.structure, generator), random_channels(plain.structure, generator)
    late_change = [*first[:-1], other[-1]]
    for channels in (first, first, late_change, first, other):
        assert torch.equal(cached.logits(channels), plain.logits(channels))
    assert all(torch.equal(v, base_state[k]) for k, v in plain.model.state_dict().items())


def test_the_evaluators_differ_where_they_should():
    """adabn changes the BN statistics, lsq the consumer weights: each changes the logits of a pruned network."""
    name = sorted(CASES)[0]
    logits = {}
    for score in SCORES:
        s = scorer(name, score, 0)
        logits[score] = s.logits(random_channels(s.structure, torch.Generator().manual_seed(3)))
    assert not torch.equal(logits["lsq"], logits["adabn"])
    assert not torch.equal(logits["lsq"], logits["lsq+adabn"])
    assert not torch.equal(logits["adabn"], logits["lsq+adabn"])
    assert not torch.equal(logits["plain"], logits["lsq"])
    assert not torch.equal(logits["plain"], logits["adabn"])
    assert not torch.equal(logits["lsq"], logits["lsq+kd"])
    assert torch.equal(logits["lsq"], logits["lsq+kl"])  # kl changes the score, not the network


def test_short_distillation_is_repeatable_and_leaves_the_base_alone():
    name = "mobilenet_v2"  # dropout in its classifier: the distillation must be seeded to repeat
    kd = scorer(name, "lsq+kd", 0, kd_steps=10)
    base_state = {k: v.clone() for k, v in kd.model.state_dict().items()}
    channels = random_channels(kd.structure, torch.Generator().manual_seed(3))
    first, again = kd.score(channels), kd.score(channels)
    assert first.accuracy == again.accuracy and first.timings["distill_s"] > 0
    assert torch.equal(kd.logits(channels), kd.logits(channels))
    assert all(torch.equal(v, base_state[k]) for k, v in kd.model.state_dict().items())


def test_short_distillation_brings_a_candidate_closer_to_the_base():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip
    g = torch.Generator().manual_seed(1)
    val_x, val_y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    images = ScoringImages(val_x, val_y, torch.randn(16, 3, 8, 8, generator=g), distill=torch.randn(320, 3, 8, 8))
    structure = analyse(net, (1, 3, 8, 8))
    agreement = {}
    for score in ("lsq+kl", "lsq+kd+kl"):
        settings = ScorerSettings(score=score, points_per_image=3, kd_steps=40, kd_batch_size=8, kd_lr=0.05)
        agreement[score] = StrategyScorer(net, structure, images, settings).score([4] * len(structure.points)).accuracy
    assert agreement["lsq+kd+kl"] > agreement["lsq+kl"]  # KD on other images of the same kind generalises


def test_teacher_agreement_is_100_for_the_unpruned_network_and_lower_when_pruned():
    name = sorted(CASES)[0]
    s = scorer(name, "lsq+kl", 0)
    full = [p.channels for p in s.structure.points]
    assert s.score(full).accuracy == pytest.approx(100, abs=1e-3)
    assert s.score(random_channels(s.structure, torch.Generator().manual_seed(3))).accuracy < 99.9


def test_one_scorer_switched_between_evaluators_scores_as_a_scorer_built_for_each():
    name = sorted(CASES)[0]
    switched = scorer(name, "lsq", 0)
    channels = random_channels(switched.structure, torch.Generator().manual_seed(4))
    for score in ("plain", "adabn", "lsq+adabn", "lsq"):
        switched.use_score(score)
        assert torch.equal(switched.logits(channels), scorer(name, score, 0).logits(channels)), score


def test_an_evaluator_switch_that_would_mix_cached_activations_or_lacks_images_is_refused():
    name = sorted(CASES)[0]
    with pytest.raises(ValueError, match="prefix cache"):
        scorer(name, "lsq", 64).use_score("adabn")
    model, size = randomised(name)
    images = ScoringImages(torch.randn(4, *size[1:]), torch.zeros(4, dtype=torch.long))
    plain = StrategyScorer(model, analyse(model, size), images, ScorerSettings(score="plain"))
    with pytest.raises(ValueError, match="needs recalibration images"):
        plain.use_score("adabn")
    with pytest.raises(ValueError, match="score must be one of"):
        plain.use_score("vanilla")
