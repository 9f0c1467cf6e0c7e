"""The action wall: budgets are met for any actions, infeasible ones fail up front, rounding never overshoots."""

from __future__ import annotations

import pytest
import torch

import models
from amc.errors import ConfigError
from amc.pruning.structure import analyse
from amc.strategy.budget import ActionWall, allowed_counts, make_constraint
from amc.strategy.latency import LatencyTable


@pytest.fixture(scope="module")
def mbv1():
    model = models.create_model("mobilenet_v1", in_channels=1, num_classes=10, small_input=True)
    return analyse(model, (1, 1, 28, 28))


def test_allowed_counts_respect_grid_and_lower_bound():
    assert allowed_counts(32, 8, 0.2) == [8, 16, 24, 32]
    assert allowed_counts(30, 8, 0.2) == [8, 16, 24, 30]
    assert allowed_counts(10, 1, 0.5) == [5, 6, 7, 8, 9, 10]
    assert allowed_counts(4, 8, 0.2) == [4]


@pytest.mark.parametrize("kind", ["flops", "params"])
@pytest.mark.parametrize("budget", [0.3, 0.5, 0.7])
def test_any_actions_meet_the_budget(mbv1, kind, budget):
    constraint = make_constraint(kind, budget, mbv1)
    wall = ActionWall(mbv1, constraint, 0.2, 8)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        decided: list[int] = []
        for t in range(len(mbv1.points)):
            decided.append(wall.choose(decided, t, float(torch.rand((), generator=generator))))
        assert constraint.cost(decided) <= constraint.limit
        filled = wall.fill(decided)
        assert constraint.cost(decided) <= constraint.cost(filled) <= constraint.limit
        assert all(c % 8 == 0 or c == w for c, w in zip(filled, mbv1.widths, strict=True))


def test_greedy_actions_land_within_one_percent_after_fill(mbv1):
    constraint = make_constraint("flops", 0.5, mbv1)
    wall = ActionWall(mbv1, constraint, 0.2, 8)
    decided: list[int] = []
    for t in range(len(mbv1.points)):
        decided.append(wall.choose(decided, t, 1.0))
    ratio = constraint.cost(wall.fill(decided)) / constraint.base_cost
    assert 0.49 <= ratio <= 0.5


def test_uniform_baseline_meets_the_budget(mbv1):
    constraint = make_constraint("flops", 0.5, mbv1)
    wall = ActionWall(mbv1, constraint, 0.2, 8)
    channels = wall.uniform()
    assert constraint.cost(channels) <= constraint.limit
    ratios = [c / w for c, w in zip(channels, mbv1.widths, strict=True)]
    assert max(ratios) - min(ratios) < 0.3  # one ratio, up to the channel grid


def test_infeasible_and_out_of_range_budgets(mbv1):
    with pytest.raises(ConfigError, match="infeasible"):
        ActionWall(mbv1, make_constraint("flops", 0.03, mbv1), 0.2, 8)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            make_constraint("flops", bad, mbv1)


def test_latency_table_is_monotone_and_budgets_hold():
    from amc.strategy.latency import LatencyTable

    model = models.create_model(
        "mobilenet_v1", cfg=[16, (32, 2), 32], in_planes=8, in_channels=1, num_classes=10, small_input=True
    ).eval()
    structure = analyse(model, (1, 1, 16, 16))
    table = LatencyTable.measure(model, structure, torch.device("cpu"), 4, 0.2, repeats=5)
    full = table(structure.widths)
    assert full == pytest.approx(table.offset + table.scale * sum(table.full)) and full > 0 and table.scale > 0
    smaller = [max(4, w // 2 // 4 * 4) for w in structure.widths]
    assert table(smaller) <= full
    floor = table(allowed_minimum := [allowed_counts(w, 4, 0.2)[0] for w in structure.widths]) / full
    assert floor <= 1
    with pytest.raises(ConfigError, match="infeasible latency budget"):
        ActionWall(structure, make_constraint("latency", 0.99 * floor, structure, table), 0.2, 4)
    constraint = make_constraint("latency", min(1.0, (floor + 1) / 2), structure, table)
    wall = ActionWall(structure, constraint, 0.2, 4)
    assert wall.minimum == allowed_minimum
    decided: list[int] = []
    for t in range(len(structure.points)):
        decided.append(wall.choose(decided, t, 1.0))
    assert constraint.cost(decided) <= constraint.limit


def test_latency_table_is_calibrated_end_to_end(monkeypatch):
    """The layer sum is mapped onto the measured latency of the base and of the smallest network."""
    import amc.deployment
    from amc.deployment import Latency

    model = models.create_model(
        "mobilenet_v1", cfg=[16, (32, 2), 32], in_planes=8, in_channels=1, num_classes=10, small_input=True
    ).eval()
    structure = analyse(model, (1, 1, 16, 16))
    table = LatencyTable.measure(model, structure, torch.device("cpu"), 4, 0.2, repeats=5)
    smallest = [allowed_counts(w, 4, 0.2)[0] for w in structure.widths]

    def fake_latency(net, x, threads, min_run_s=1.0):  # the base "takes" 10 ms, anything smaller 4 ms
        big = sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in model.parameters())
        return Latency("pytorch", len(x), 10.0 if big else 4.0, 0.0, 1, threads)

    monkeypatch.setattr(amc.deployment, "torch_latency", fake_latency)
    table.calibrate(model, torch.device("cpu"), smallest)
    assert table(structure.widths) == pytest.approx(10.0) and table(smallest) == pytest.approx(4.0)
    half = [max(4, w // 2 // 4 * 4) for w in structure.widths]
    assert 4.0 <= table(half) <= 10.0


def test_latency_table_is_cached_per_layout(tmp_path, monkeypatch):
    model = models.create_model(
        "mobilenet_v1", cfg=[16, (32, 2), 32], in_planes=8, in_channels=1, num_classes=10, small_input=True
    ).eval()
    structure = analyse(model, (1, 1, 16, 16))
    first = LatencyTable.cached(tmp_path, model, structure, torch.device("cpu"), 4, 0.2)
    monkeypatch.setattr(LatencyTable, "measure", classmethod(lambda *a, **k: pytest.fail("measured again")))
    again = LatencyTable.cached(tmp_path, model, structure, torch.device("cpu"), 4, 0.2)
    channels = [max(4, w // 2 // 4 * 4) for w in structure.widths]
    assert again(channels) == first(channels) and again(structure.widths) == first(structure.widths)
    other = analyse(model, (1, 1, 32, 32))  # another input size is another table
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        LatencyTable.cached(tmp_path, model, other, torch.device("cpu"), 4, 0.2)
