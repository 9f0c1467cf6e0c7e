"""Channel ranking by greedy least-squares elimination (``selection=lsq``)."""

from __future__ import annotations

import itertools

import pytest
import torch

from amc.errors import ConfigError
from amc.pruning.apply import keep_indices, selection_scores
from amc.pruning.lsq_ranking import elimination_scores
from amc.pruning.reconstruction import RIDGE, ConsumerStats, OpenLoopReconstructor, input_columns, well_posed
from amc.pruning.slicing import channel_scores
from amc.pruning.structure import analyse
from tests.pruning.test_pruning import randomised


def residual(x: torch.Tensor, y: torch.Tensor, cols: list[int]) -> float:
    """‖X_S·β − Y‖² with β refit by least squares on the columns ``cols``."""
    xs = x[:, cols]
    beta = torch.linalg.lstsq(xs, y).solution
    return float((xs @ beta - y).square().sum())


def brute_force_order(x: torch.Tensor, ys: list[torch.Tensor], area: int, channels: int) -> list[int]:
    """Greedy elimination re-solving every candidate's least squares from scratch (the definition)."""
    alive, order = list(range(channels)), []
    while alive:

        def cost(c: int, alive: list[int] = alive) -> float:
            rest = [k for k in alive if k != c]
            cols = input_columns(torch.tensor(rest, dtype=torch.long), area).tolist() if rest else []
            return sum(residual(x, y, cols) if cols else float(y.square().sum()) for y in ys)

        victim = min(alive, key=cost)
        alive.remove(victim)
        order.append(victim)
    return order


def stats_of(x: torch.Tensor, y: torch.Tensor, area: int) -> ConsumerStats:
    return ConsumerStats(x.T @ x, x.T @ y, area, len(x))


@pytest.mark.parametrize("area", [1, 4])
def test_elimination_matches_refitting_every_candidate(area):
    torch.manual_seed(0)
    channels, rows = 7, 400
    x = torch.randn(rows, channels * area, dtype=torch.float64)
    x[:, area : 2 * area] = x[:, :area] * 0.9 + 0.2 * x[:, area : 2 * area]  # a nearly redundant channel
    ys = [x @ torch.randn(channels * area, out, dtype=torch.float64) for out in (5, 3)]  # two consumers
    columns = {c: input_columns(torch.tensor([c]), area).tolist() for c in range(channels)}
    scores = elimination_scores(channels, [(stats_of(x, y, area), columns) for y in ys])
    order = torch.argsort(scores).tolist()  # first dropped first
    assert order == brute_force_order(x, ys, area, channels)


def test_a_duplicated_channel_is_dropped_where_l1_keeps_both():
    """Two copies of one feature with large weights: L1 keeps both, the refit needs only one of them."""
    torch.manual_seed(1)
    x = torch.randn(500, 6, dtype=torch.float64)
    x[:, 1] = x[:, 0]
    w = torch.tensor([3.0, 3.0, 1.0, 0.8, 0.6, 0.5], dtype=torch.float64)
    y = (x * w).sum(1, keepdim=True)
    scores = elimination_scores(6, [(stats_of(x, y, 1), {c: [c] for c in range(6)})])
    kept = sorted(torch.argsort(scores, descending=True)[:4].tolist())
    assert len({0, 1} & set(kept)) == 1
    best = min(residual(x, y, list(cols)) for cols in itertools.combinations(range(6), 4))
    assert residual(x, y, kept) == pytest.approx(best, rel=1e-9)
    assert residual(x, y, kept) < residual(x, y, [0, 1, 2, 3]) / 2  # L1's choice


def explained(stats: ConsumerStats, channels: list[int]) -> float:
    """tr(Bᵀ·G⁻¹·B) on the kept channels: the part of the consumer's output its refit reproduces (the same
    tiny ridge as the refit: dead channels make G singular)."""
    cols = input_columns(torch.tensor(channels, dtype=torch.long), stats.kernel_area)
    gram = stats.gram[cols][:, cols]
    gram = gram + RIDGE * stats.gram.diagonal().mean() * torch.eye(len(cols), dtype=gram.dtype)
    cross = stats.cross[cols]
    return float((cross * torch.linalg.solve(gram, cross)).sum())


def test_lsq_keeps_channels_whose_refit_reproduces_a_network_better_than_l1():
    model, size = randomised("mobilenet_v1", width_mult=0.5)
    structure = analyse(model, size)
    images = torch.randn(256, *size[1:])
    stats = OpenLoopReconstructor(model, structure, images, points_per_image=40, seed=0).stats
    lsq = selection_scores(model, structure, "lsq", 0, stats)
    l1 = selection_scores(model, structure, "l1", 0)
    for point, a in zip(structure.points, lsq, strict=True):
        (consumer,) = point.consumers
        if well_posed(stats[consumer]):
            assert sorted(a.tolist()) == list(range(point.channels))  # the elimination order
        else:  # the deepest layers see 1-4 positions per image: too few rows, so L1 ranks them
            assert torch.equal(a, channel_scores(model, point, "l1"))
    assert not all(well_posed(s) for s in stats.values())
    # The stem's consumer has no dead input channel (deeper ones of this random network have up to half),
    # so its least squares is well conditioned: what the refit reproduces from a third / half of the channels.
    stem, consumer = structure.points[0], structure.points[0].consumers[0]
    whole = explained(stats[consumer], list(range(stem.channels)))
    for keep in (stem.channels // 3, stem.channels // 2):
        by_lsq, by_l1 = (torch.argsort(s, descending=True)[:keep].tolist() for s in (lsq[0], l1[0]))
        assert explained(stats[consumer], by_lsq) > explained(stats[consumer], by_l1) + 0.2 * whole


def test_lsq_without_statistics_is_a_clear_error():
    model, size = randomised("mobilenet_v1")
    structure = analyse(model, size)
    with pytest.raises(ConfigError, match="needs reconstruction"):
        keep_indices(model, structure, structure.widths, "lsq")


def test_an_underdetermined_consumer_is_refit_on_more_images():
    """The classifier gets one row per image: 64 images cannot fit its 512 inputs, so it asks for enough."""
    model, size = randomised("mobilenet_v1", width_mult=0.5)
    structure = analyse(model, size)
    asked: list[int] = []

    def more(count: int) -> torch.Tensor:
        asked.append(count)
        return torch.randn(count, *size[1:])

    images = torch.randn(64, *size[1:])
    thin = OpenLoopReconstructor(model, structure, images, points_per_image=10, seed=0).stats
    fitted = OpenLoopReconstructor(model, structure, images, points_per_image=10, seed=0, more_images=more).stats
    columns = len(thin["classifier.0"].gram)
    assert thin["classifier.0"].rows == 64 and not well_posed(thin["classifier.0"])
    assert asked == [2 * columns]  # one row per image: twice the columns in images
    assert fitted["classifier.0"].rows == 2 * columns and well_posed(fitted["classifier.0"])
    assert all(well_posed(s) for s in fitted.values())
    assert torch.equal(fitted["features.0.3"].gram, thin["features.0.3"].gram)  # well-posed ones untouched
