"""Base networks that ship with amc, so a first search starts from a strong network instead of training one.

Each is an ordinary amc checkpoint under ``weights/`` (loaded with ``weights_only``) with the command that
rebuilds it; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ShippedBase:
    model: str  # registry name, built with its default arguments for the data
    data: str
    file: str  # under weights/
    test_top1: float  # percent, the data's official test split
    command: str  # what trained it (then copy its best.pt here)

    @property
    def path(self) -> Path:
        return Path(__file__).resolve().parent / "weights" / self.file


SHIPPED = (
    ShippedBase(
        model="mobilenet_v1",
        data="fashion_mnist",
        file="fmnist_mobilenet_v1.pt",
        test_top1=93.63,
        command=(
            "python -m amc.train model=mobilenet_v1 data=fashion_mnist train.epochs=24 train.lr=0.1 "
            "train.warmup_epochs=0.5 train.weight_decay=5e-5 logger=none seed=0"
        ),
    ),
)


def shipped_base(model: str, data: str) -> ShippedBase | None:
    """The shipped base for ``model`` (default arguments) on ``data``, if amc has one and its file is present."""
    return next((b for b in SHIPPED if (b.model, b.data) == (model, data) and b.path.is_file()), None)
