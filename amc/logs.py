"""A run's log: what it prints goes to the terminal and to its run dir's log file (Hydra sets both up; see
``conf/hydra/job_logging/amc.yaml``). Child processes (the base training) write to the same file."""

from __future__ import annotations

import logging
import sys

STAMPED = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"


def log_files() -> list[str]:
    """The files this process logs to (the run dir's log under Hydra; none outside it)."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def log_like_parent(files: list[str]) -> None:
    """In a child process: bare lines on the terminal and stamped ones appended to the parent's log files."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    for path in files:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(STAMPED))
        root.addHandler(handler)


def to_log_files(message: str, level: int = logging.ERROR) -> None:
    """Write ``message`` to the log files only (for a line already printed on the terminal)."""
    record = logging.LogRecord("amc", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
