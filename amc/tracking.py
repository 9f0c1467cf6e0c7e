"""Experiment tracking: wandb, offline unless the user has configured a key; or nothing."""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path
from typing import Any

from amc.io import write_text_atomic


def has_wandb_key() -> bool:
    """A key in the environment, or one ``wandb login`` stored for api.wandb.ai (not any ~/.netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


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

        mode = mode or os.environ.get("WANDB_MODE") or ("online" if has_wandb_key() else "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        # One wandb run per run dir: a resumed job continues the run it started, not a second one.
        id_file = Path(run_dir) / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        if not id_file.is_file():
            write_text_atomic(id_file, run_id)
        self.run = wandb.init(
            project=project,
            name=name,
            dir=str(run_dir),
            config=config,
            mode=mode,
            id=run_id,
            resume="allow",
            reinit="finish_previous",
        )

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
