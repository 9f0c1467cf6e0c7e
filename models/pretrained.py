"""Base networks that ship with amc, so a first search starts from a strong network instead of training one.

Each is an ordinary amc checkpoint under ``weights/`` (loaded with ``weights_only``) with the command that
rebuilds it; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ShippedBase:
    model: str  # registry name, built with its default arguments for the data
    data: str
    file: str  # under weights/
    test_top1: float  # percent, the data's official test split
    command: str  # what trained it (then copy its best.pt here)
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # the builder's arguments it was trained with

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
        kwargs={"profile": "normal"},  # conf/model/mobilenet_v1.yaml's
    ),
)


def shipped_base(model: str, data: str, kwargs: Mapping[str, Any] | None = None) -> ShippedBase | None:
    """The shipped base for ``model`` built with ``kwargs`` (none: its defaults) on ``data``, if amc has one and its
    file is present."""
    wanted = dict(kwargs or {})
    return next(
        (
            b
            for b in SHIPPED
            if (b.model, b.data) == (model, data) and wanted in ({}, dict(b.kwargs)) and b.path.is_file()
        ),
        None,
    )
