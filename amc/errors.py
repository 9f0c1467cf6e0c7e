"""The errors a user's input can cause. Each becomes one ``error:`` line and exit code 2 at the entry point
(``amc.entry``); here they are plain exceptions, so the library raises them without importing Hydra."""

from __future__ import annotations

from amc.models.errors import AmcError  # the one root, shared with models/ (CheckpointError, ModelConfigError)

__all__ = ["AmcError", "ConfigError", "DataNotFoundError"]


class DataNotFoundError(AmcError):
    """A dataset's files are not where the config says."""


class ConfigError(AmcError):
    """A config value out of range or inconsistent with another."""
