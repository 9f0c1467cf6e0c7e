"""Singular least-squares systems fall back to least squares, are counted, and never raise."""

from __future__ import annotations

import torch

from amc.pruning import linear_solve
from amc.pruning.reconstruction import ConsumerStats, solve


def test_a_regular_system_is_solved_exactly_and_not_counted():
    a = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    before = sum(linear_solve.FALLBACKS.values())
    assert torch.allclose(a @ linear_solve.solve(a, b), b)
    assert sum(linear_solve.FALLBACKS.values()) == before


def test_a_singular_system_gets_the_minimum_norm_least_squares_solution():
    a = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # rank 1
    b = torch.tensor([[2.0], [2.0]], dtype=torch.float64)
    before = linear_solve.FALLBACKS["test"]
    x = linear_solve.solve(a, b, "test")
    assert torch.allclose(x, torch.tensor([[1.0], [1.0]], dtype=torch.float64))  # minimum norm of x1 + x2 = 2
    assert linear_solve.FALLBACKS["test"] == before + 1
    assert torch.allclose(linear_solve.inverse(a, "test"), torch.linalg.pinv(a))


def test_a_refit_whose_system_stays_singular_does_not_raise(monkeypatch):
    """Features constant along a direction (LayerNorm blocks, dead channels) can leave XᵀX + λI singular in
    floating point; without the ridge it is exactly singular here, and torch.linalg.solve would raise."""
    import amc.pruning.reconstruction.refit as refit

    monkeypatch.setattr(refit, "RIDGE", 0.0)
    gram = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    stats = ConsumerStats(gram, torch.ones(3, 2, dtype=torch.float64), 1, 100)
    before = linear_solve.FALLBACKS["refit"]
    weights = solve(stats, torch.tensor([0, 1, 2]))
    assert weights.shape == (2, 3) and torch.isfinite(weights).all()
    assert linear_solve.FALLBACKS["refit"] == before + 1
