"""The errors a user's input can cause. Each becomes one ``error:`` line and exit code 2 at the entry point
(``amc.entry``; 3 for :class:`NoStrategyError`); here they are plain exceptions, so the library raises them
without importing Hydra."""

from __future__ import annotations

from amc.models.errors import AmcError  # the one root, shared with models/ (CheckpointError, ModelConfigError)

__all__ = ["AmcError", "ConfigError", "DataNotFoundError", "NoStrategyError"]


class DataNotFoundError(AmcError):
    """A dataset's files are not where the config says."""


class ConfigError(AmcError):
    """A config value out of range or inconsistent with another."""


class NoStrategyError(ConfigError):
    """A search spent its evaluations or CPU seconds before it scored one strategy within the budget. Its own exit
    code, 3, lets a script that drives searches tell it from bad input (2)."""

    exit_code = 3
