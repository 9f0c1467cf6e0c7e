"""Entry points: one decorator makes a function a Hydra app whose bad input is one ``error:`` line and exit 2.

``@entry_point("search")`` composes ``conf/search.yaml``; a bad override Hydra refuses, and any ``AmcError`` the
run raises, print one line; in a multirun a failed job is reported and the others go on (``ReportFailedJobs``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from amc.config import CONFIG_DIR
from amc.errors import AmcError
from amc.logs import to_log_files

F = TypeVar("F", bound=Callable[..., Any])

FAILED_JOBS_FILE = "failed_jobs.txt"  # in a multirun's sweep dir: one line per job stopped by a user error


def _multirun_job() -> tuple[str, Path] | None:
    """(``job N (overrides)``, the sweep dir) inside a Hydra multirun, else ``None``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return f"job {hc.job.num} ({' '.join(hc.overrides.task)})", Path(hc.sweep.dir)


def user_errors_exit(fn: F) -> F:
    """Wrap an entry point so known user errors print ``error: ...`` on stderr and exit 2 (or the error's own
    ``exit_code``), no traceback.

    In a ``-m`` multirun a failed job is reported and the sweep goes on (with any launcher: the job
    writes a line to the sweep dir); :class:`ReportFailedJobs` exits 2 at the end, naming the failed jobs.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AmcError as exc:
            print(f"error: {exc}", file=sys.stderr)
            to_log_files(f"error: {exc}")
            job = _multirun_job()
            if job is None:
                sys.exit(getattr(exc, "exit_code", 2))
            label, sweep_dir = job
            sweep_dir.mkdir(parents=True, exist_ok=True)
            with open(sweep_dir / FAILED_JOBS_FILE, "a") as f:  # one short append per job: no interleaving
                f.write(f"{label}: {exc}\n")
            return None
        except KeyboardInterrupt:
            print("interrupted: the run dir keeps what was saved; pass resume=... to continue", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def config_error_line(exc: BaseException) -> str:
    """Hydra's message for a bad override or config as one line: an indented list ("Available options in
    'model':") joined with commas, the config search path and doc links left out, the OmegaConf cause (a value of
    the wrong type, an unknown key) appended in brackets."""
    sentences: list[str] = []
    listed: list[str] = []  # items indented under the last sentence
    for line in str(exc).split("Config search path:")[0].splitlines():
        item = line.strip()
        if not item or item.startswith("See https://"):
            continue
        if line[:1].isspace() and sentences:
            listed.append(item)
            continue
        if listed:
            sentences[-1] += " " + ", ".join(listed)
            listed = []
        sentences.append(item)
    if listed:
        sentences[-1] += " " + ", ".join(listed)
    text = ""
    for sentence in sentences:
        text += ("" if not text else " " if text.endswith((".", ":", ";", "!", "?")) else ". ") + sentence
    cause = str(exc.__cause__ or "").strip()
    return f"{text} ({cause.splitlines()[0]})" if cause else text


def one_line_config_errors(fn: F) -> F:
    """Wrap a ``@hydra.main`` entry point so a bad override or config group (``flops_budget=abc``, ``model=nope``,
    an unknown key) prints one ``error: ...`` line and exits 2, as other bad input does, instead of Hydra's
    several lines. ``HYDRA_FULL_ERROR=1`` set by the user keeps Hydra's own report with its stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get("HYDRA_FULL_ERROR") and not os.environ.get(_OURS):  # the user asked for Hydra's report
            return fn(*args, **kwargs)
        # Hydra then raises its errors to us instead of printing them. Child processes (pipeline stages, workers)
        # inherit both variables, and the marker tells them it was not the user who set it.
        os.environ.update({"HYDRA_FULL_ERROR": "1", _OURS: "1"})
        try:
            return fn(*args, **kwargs)
        except CompactHydraException as exc:  # the errors Hydra itself reports without a stack trace
            print(f"error: {config_error_line(exc)}", file=sys.stderr)
            sys.exit(2)
        finally:
            for name in ("HYDRA_FULL_ERROR", _OURS):
                os.environ.pop(name, None)

    return wrapper  # type: ignore[return-value]


_OURS = "AMC_ONE_LINE_CONFIG_ERRORS"


class ReportFailedJobs(Callback):
    """Hydra callback (``hydra.callbacks``): after a multirun, exit 2 naming the jobs a user error stopped."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / FAILED_JOBS_FILE).unlink(missing_ok=True)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / FAILED_JOBS_FILE
        if not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        print(f"{len(lines)} multirun job(s) failed (the others finished; list in {path}):", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        sys.exit(2)


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``@entry_point("train")``: ``main(cfg)`` becomes ``python -m amc.train``'s Hydra app on ``conf/train.yaml``,
    its bad input one error line and exit 2. ``main`` returns the metric it optimises (for Hydra's sweepers)."""

    def wrap(main: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        compose = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
        app = one_line_config_errors(compose(user_errors_exit(main)))
        app.config_name = config_name  # type: ignore[attr-defined]  # which conf/*.yaml it composes
        return app

    return wrap


def job_entry_point(
    config_name: str, job: Callable[[Any, Path], Any], metric: Callable[[Any], float | None] | None = None
) -> Callable[[], Any]:
    """``main = job_entry_point("export", export_strategy)``: the Hydra app of a job that takes its settings and its
    run dir (``amc.config.start_run``), returning ``metric`` of the job's result for Hydra's sweepers.

    Hydra names the job (its log file, ``hydra.job.name``) after the module that defines the task, so the task
    takes the entry point's module name, ``amc.<config_name>``: ``amc.export`` for ``python -m amc.export`` too."""
    from amc.config import start_run

    def task(cfg: DictConfig) -> float | None:
        settings, run_dir = start_run(cfg)
        result = job(settings, run_dir)
        return metric(result) if metric is not None else None

    task.__module__ = f"amc.{config_name}"
    return entry_point(config_name)(task)
