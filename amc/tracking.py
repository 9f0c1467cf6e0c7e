"""Experiment tracking: wandb, offline unless the user has configured a key; or nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class Tracker:
    """A thin wandb wrapper; ``kind="none"`` turns every call into a no-op."""

    def __init__(
        self,
        kind: str,
        run_dir: Path,
        config: dict[str, Any],
        project: str = "amc",
        name: str | None = None,
        mode: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.run = None
        if kind == "none" or not enabled:
            return
        if kind != "wandb":
            from amc.errors import ConfigError

            raise ConfigError(f"unknown logger {kind!r}; use wandb or none")
        import wandb

        has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").is_file()
        mode = mode or os.environ.get("WANDB_MODE") or ("online" if has_key else "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=project, name=name, dir=str(run_dir), config=config, mode=mode, reinit=True)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
