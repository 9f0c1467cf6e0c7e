"""Probes of an earlier sensitivity run, reused by a search of another budget (``agent.probes_from=RUN``).

A probe scores one layer pruned alone, which no budget enters; so a run over the same base, data and evaluator has
scored it already. Reused probes are read, not scored, and do not count as evaluations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from amc.errors import ConfigError
from amc.io import read_jsonl
from amc.settings import within

# what may differ from the run whose probes are reused: the budget, how long and where a run goes, its export
MAY_DIFFER = (
    "flops_budget", "params_budget", "latency_budget", "episodes", "agent.candidates", "agent.probes_from", "promote",
    "export_reconstruction", "export_calibration_images", "export_candidates", "test_images", "threads", "device",
    "devices", "workers", "logger", "cache_dir", "resume", "on_existing", "stop_after", "fill_budget", "search_cpu_s",
)  # fmt: skip


def reusable_probes(run_dir: str | Path) -> dict[tuple[int, ...], float]:
    """Each probed network's channels and reward in ``run_dir/probes.jsonl``."""
    return {tuple(row["channels"]): float(row["reward"]) for row in read_jsonl(Path(run_dir) / "probes.jsonl")}


def check_probes_from(settings: Any, run_dir: str | Path) -> None:
    """``run_dir`` is a sensitivity run whose settings score a probe as this search would; else one error line."""
    run_dir = Path(run_dir)
    if not (run_dir / "probes.jsonl").is_file() or not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"agent.probes_from={run_dir} holds no probes.jsonl and config.yaml of a sensitivity run")
    theirs = _flat(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    ours = _flat(dataclasses.asdict(settings))
    differ = sorted(
        key
        for key in theirs.keys() | ours.keys()
        if not within(key, MAY_DIFFER) and not _same(theirs.get(key), ours.get(key))
    )
    if differ:
        shown = "; ".join(f"{k}={ours.get(k)} (it ran with {theirs.get(k)})" for k in differ[:4])
        raise ConfigError(
            f"agent.probes_from={run_dir} scored its probes with other settings: {shown}"
            + (f" and {len(differ) - 4} more" if len(differ) > 4 else "")
            + "; its probes would not be this search's"
        )


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= _flat(value, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): str(tree) if tree is not None else None}


def _same(saved: Any, current: Any) -> bool:
    """One setting's saved value (read as YAML 1.1, where ``1e-05`` is a string) and its current one, alike."""
    if isinstance(saved, str) and isinstance(current, float):
        try:
            return float(saved) == current
        except ValueError:
            return False
    return saved == current
