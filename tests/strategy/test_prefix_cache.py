"""The prefix cache: traced stages reproduce every family's forward; cached scoring is bit-identical and reuses work."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from amc.pruning.staged_forward import StagedForward
from amc.pruning.structure import analyse
from amc.strategy.scoring import ScorerSettings, ScoringImages, StrategyScorer
from tests.pruning.test_pruning import CASES, random_channels, randomised


@pytest.mark.parametrize("name", sorted(CASES))
def test_staged_forward_reproduces_forward_from_every_cut(name):
    model, size = randomised(name)
    staged = StagedForward(model, analyse(model, size))
    assert len(staged.cuts) >= 3
    # each stage depends on more decision points than the one before (cuts with the same ones are merged)
    assert all(len(a) < len(b) for a, b in zip(staged.points_upto, staged.points_upto[1:], strict=False))
    x = torch.randn(3, *size[1:])
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(staged.run(model, x, 0, None), expected)
        for k in range(len(staged.cuts)):
            h = staged.run(model, x, 0, k)
            assert torch.equal(staged.run(model, h, k + 1, None), expected)


def scorers(name: str, cache_mb: float, dtype: torch.dtype = torch.float32) -> tuple[StrategyScorer, StrategyScorer]:
    model, size = randomised(name)
    generator = torch.Generator().manual_seed(1)
    val_x = torch.randn(12, *size[1:], generator=generator)
    val_y = torch.randint(0, 10, (12,), generator=generator)
    calib = torch.randn(6, *size[1:], generator=generator)
    structure = analyse(model, size)
    images = ScoringImages(val_x, val_y, calib)
    settings = ScorerSettings(points_per_image=3, batch_size=5, dtype=dtype)  # 3 batches, the last one short
    plain = StrategyScorer(model, structure, images, settings)
    cached = StrategyScorer(model, structure, images, dataclasses.replace(settings, prefix_cache_mb=cache_mb))
    return plain, cached


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "resnet18" else n for n in sorted(CASES)]
)  # ResNet-18's residual streams feed 4,608-column least squares: ~1 min on 2 cores
def test_cached_scores_equal_full_evaluation_and_reuse_shared_prefixes(name):
    plain, cached = scorers(name, cache_mb=64)
    assert cached.prefix_cache is not None
    structure = plain.structure
    generator = torch.Generator().manual_seed(2)
    first = random_channels(structure, generator)
    other = random_channels(structure, generator)
    late_change = [*first[:-1], other[-1]]  # agrees with ``first`` everywhere but the last decision point
    reused = []
    for channels in (first, first, late_change, first, other, late_change):
        assert torch.equal(cached.logits(channels), plain.logits(channels))
        score = cached.score(channels)
        assert (score.top1, score.top5) == (plain.score(channels).top1, plain.score(channels).top5)
        reused.append(score.reused_stages)
    assert reused[0] == 0  # nothing stored before a prefix was seen twice
    assert max(reused) > 0
    assert cached.prefix_cache.held_bytes <= cached.prefix_cache.budget_bytes


def test_cache_never_holds_more_than_its_budget():
    plain, cached = scorers("mobilenet_v1", cache_mb=1e-4)  # ~100 bytes: no activation fits
    channels = random_channels(plain.structure, torch.Generator().manual_seed(3))
    for _ in range(3):
        assert cached.score(channels).reused_stages == 0
    assert cached.prefix_cache.held_bytes == 0 and not cached.prefix_cache.entries


def test_bfloat16_scoring_is_cached_exactly_keeps_the_base_and_stays_near_float32():
    # MobileNetV1: bfloat16 on a CPU without it is emulated, and V2's residual prefixes are covered in float32 above
    plain16, cached16 = scorers("mobilenet_v1", cache_mb=64, dtype=torch.bfloat16)
    plain32, _ = scorers("mobilenet_v1", cache_mb=0)
    base = plain16.model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    channels = random_channels(plain16.structure, torch.Generator().manual_seed(4))
    for _ in range(3):  # stored on the second visit, read on the third
        logits16 = cached16.logits(channels)
        assert logits16.dtype == torch.bfloat16 and torch.equal(logits16, plain16.logits(channels))
    assert cached16.score(channels).reused_stages > 0
    assert all(t.dtype == torch.bfloat16 for t in cached16.prefix_cache.entries.values())
    # the unpruned widths: the randomised fixtures' least squares blow pruned logits up to ~1e6, past any tolerance
    widths = plain16.structure.widths
    full16, full32 = plain16.logits(widths).float(), plain32.logits(widths)
    assert plain32.logits(channels).dtype == torch.float32
    assert not torch.equal(full16, full32)  # really computed in bfloat16 ...
    assert (full16 - full32).abs().max() < 0.02 * full32.abs().max()  # ... to its precision (8 significant bits)
    assert plain16.time_base_evaluation(torch.float32) > 0 and plain16.time_base_evaluation(torch.bfloat16) > 0
    after = base.state_dict()  # scoring and timing the base cast and fold copies, never the base itself
    assert after.keys() == before.keys()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
