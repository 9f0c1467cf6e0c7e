"""The one place files are written: atomically (a temporary file, then a rename), so a kill never
leaves a half-written result, and never over results a finished run produced."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from amc.errors import ConfigError


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    _replace(tmp, path)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2))


def write_csv_atomic(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """One row appended to a JSON-lines log in one short write; a kill can cut only that line, and
    :func:`read_jsonl` drops it."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a JSON-lines log; a last line a kill cut short is dropped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


def loadable(value: Any) -> Any:
    """``value`` in types ``torch.load(weights_only=True)`` accepts: str subclasses (a setting's
    ``amc.choices`` member) made plain str, config containers (OmegaConf) plain dicts and lists, numpy scalars
    Python numbers. weights_only refuses any class it does not know, so one would make the whole file unloadable."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, OrderedDict | torch.Tensor):  # a state_dict: its _metadata must survive (tensors only)
        return value
    if isinstance(value, Mapping):
        return {loadable(key): loadable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(loadable(item) for item in value)
    if type(value).__name__ == "ListConfig":
        return [loadable(item) for item in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(loadable(obj), tmp)
    _replace(tmp, path)
    return path


def refuse_finished_run(run_dir: Path, results: Iterable[str], job: str) -> None:
    """A run dir that holds a run's results is not written into again (only resumed)."""
    found = [name for name in results if (run_dir / name).exists()]
    if found:
        raise ConfigError(
            f"{run_dir} already holds the results of an earlier {job} ({', '.join(found)}); "
            f"pass resume={run_dir} to continue it, or choose another hydra.run.dir"
        )
