"""``amc.Budget``: what a compressed network may keep of its base, as one fraction of one cost."""

from __future__ import annotations

from dataclasses import dataclass

from amc.errors import AmcError
from amc.settings import budget_error

KINDS = ("flops", "params", "latency")


class BudgetError(AmcError):
    """A budget with no kind or several, or a fraction outside (0, 1]."""


@dataclass(frozen=True)
class Budget:
    """The fraction of the base's cost the compressed network may keep: exactly one of the three.

    :param flops: of the base's MACs (FLOPs = 2 x MACs, so the fraction is the same for both).
    :param params: of the base's trainable parameters.
    :param latency: of the base's end-to-end latency at batch 1, timed on this machine.

    >>> Budget(flops=0.5).kind, Budget(flops=0.5).fraction
    ('flops', 0.5)
    """

    flops: float | None = None
    params: float | None = None
    latency: float | None = None

    def __post_init__(self) -> None:
        given = {kind: getattr(self, kind) for kind in KINDS if getattr(self, kind) is not None}
        if len(given) != 1:
            named = ", ".join(given) or "none"
            raise BudgetError(f"a Budget takes exactly one of flops=, params=, latency= (got {named})")
        ((kind, value),) = given.items()
        if budget_error(f"{kind}_budget", value):
            raise BudgetError(f"Budget({kind}={value!r}): the fraction of the base network's cost must be in (0, 1]")

    @property
    def kind(self) -> str:
        """``flops``, ``params`` or ``latency``."""
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def fraction(self) -> float:
        """The fraction of the base's cost that may be kept."""
        return float(getattr(self, self.kind))

    def setting(self) -> dict[str, float]:
        """The search setting this budget is: ``{"flops_budget": 0.5}``."""
        return {f"{self.kind}_budget": self.fraction}
