"""Linear solves that never stop a search: the exact solve, or least squares where the system is singular.

Least-squares reconstruction solves ``(XᵀX + λI) W = XᵀY``. A network whose features are constant along some
direction (LayerNorm blocks, dead channels) can leave that system singular even with the ridge; then a
minimum-norm least-squares solution is used instead, and the fallback is counted (``FALLBACKS``) so the search
records it in ``strategy.json``.
"""

from __future__ import annotations

from collections import Counter

import torch

FALLBACKS: Counter[str] = Counter()  # where a solve fell back to least squares in this process, by purpose


def solve(a: torch.Tensor, b: torch.Tensor, purpose: str = "refit") -> torch.Tensor:
    """``a⁻¹ b`` (batched like ``torch.linalg.solve``); the least-squares solution where ``a`` is singular."""
    try:
        x = torch.linalg.solve(a, b)
        if torch.isfinite(x).all():
            return x
    except torch.linalg.LinAlgError:
        pass
    FALLBACKS[purpose] += 1
    # gelsd (SVD) handles rank-deficient systems on the CPU; other devices only offer gels, so solve on the CPU
    return torch.linalg.lstsq(a.double().cpu(), b.double().cpu(), driver="gelsd").solution.to(a.device, a.dtype)


def inverse(a: torch.Tensor, purpose: str = "ranking") -> torch.Tensor:
    """``a⁻¹``; the pseudo-inverse where ``a`` is singular."""
    try:
        x = torch.linalg.inv(a)
        if torch.isfinite(x).all():
            return x
    except torch.linalg.LinAlgError:
        pass
    FALLBACKS[purpose] += 1
    return torch.linalg.pinv(a)
