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


FAILED_JOBS: list[str] = []  # multirun jobs that stopped on a user error, reported when the sweep ends


def _multirun_job() -> str | None:
    """``job N (overrides)`` inside a Hydra multirun, else ``None``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return f"job {hc.job.num} ({' '.join(hc.overrides.task)})"


def user_errors_exit(fn: F) -> F:
    """Wrap an entry point so known user errors print ``error: ...`` on stderr and exit 2, no traceback.

    In a ``-m`` multirun a failed job is reported and the sweep goes on; :func:`run_entry_point` exits
    non-zero at the end, naming the failed jobs.
    """
    from models import CheckpointError, ModelConfigError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (AmcError, CheckpointError, ModelConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            job = _multirun_job()
            if job is None:
                sys.exit(2)
            FAILED_JOBS.append(f"{job}: {exc}")
            return None
        except KeyboardInterrupt:
            print("interrupted: the run dir keeps what was saved; pass resume=... to continue", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def run_entry_point(main: Callable[[], Any]) -> None:
    """Run a Hydra ``main``; after a multirun, exit 2 if any job failed (the others have finished)."""
    main()
    if FAILED_JOBS:
        print(f"{len(FAILED_JOBS)} multirun job(s) failed:", file=sys.stderr)
        for line in FAILED_JOBS:
            print(f"  {line}", file=sys.stderr)
        sys.exit(2)
