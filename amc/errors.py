"""User-facing errors and the one place that turns them into a single line and an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class AmcError(Exception):
    """A problem with the user's input (config, data, checkpoint): reported as one line, exit 2."""


class DataNotFoundError(AmcError):
    """A dataset's files are not where the config says."""


class ConfigError(AmcError):
    """A config value out of range or inconsistent with another."""


def user_errors_exit(fn: F) -> F:
    """Wrap an entry point so known user errors print ``error: ...`` on stderr and exit 2, no traceback."""
    from models import CheckpointError, ModelConfigError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (AmcError, CheckpointError, ModelConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted: the run dir keeps what was saved; pass resume=... to continue", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
