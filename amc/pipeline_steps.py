"""The stages of ``amc.pipeline`` (each stage's own entry point as a child process) and its report."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from amc.errors import AmcError, ConfigError
from amc.io import write_text_atomic
from amc.plots import plot_accuracy_vs_macs
from amc.settings import CODE_KEYS, PipelineConfig, budget_error

log = logging.getLogger(__name__)


def stage(module: str, args: list[str], run_dir: Path) -> None:
    """Run one stage; skip it when its outputs exist (so a re-run of the pipeline resumes)."""
    log.info(f"== {module} {' '.join(args)}")
    proc = subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={run_dir}"], check=False)
    if proc.returncode != 0:
        raise AmcError(f"stage {module} failed (exit {proc.returncode}); its log is in {run_dir}")


def run_pipeline(cfg: PipelineConfig, root: Path) -> dict[str, Any]:
    error = budget_error("flops_budget", cfg.flops_budget)  # a bad budget fails now, not after base training
    if error:
        raise ConfigError(error)
    if cfg.checkpoint and not Path(cfg.checkpoint).is_file():
        raise AmcError(f"checkpoint not found: {cfg.checkpoint}")
    common = [
        f"data={cfg.data_group}",
        f"model={cfg.model_group}",
        f"seed={cfg.seed}",
        f"logger={cfg.logger_group}",
        *([f"checkpoint={cfg.checkpoint}"] if cfg.checkpoint else []),
        *cfg.extra_search_args,
    ]
    budget = [f"flops_budget={cfg.flops_budget}"]
    # a resumed search trusts no code its saved config names unless restated: this run's own word restates it
    restated = [
        a for a in cfg.extra_search_args if a.split("=", 1)[0].lstrip("+~").endswith((*CODE_KEYS, "model.name"))
    ]
    searches = {"amc": ["agent=ddpg", f"episodes={cfg.episodes}"], "uniform": ["agent=uniform"]}
    for name, args in searches.items():
        if not (root / name / "strategy.json").is_file() or not (root / name / "pruned.pt").is_file():
            started = (root / name / "config.yaml").is_file()  # an interrupted search: continue it
            stage(
                "amc.search",
                [f"resume={root / name}", *restated] if started else [*common, *budget, *args],
                root / name,
            )
    strategy = json.loads((root / "amc" / "strategy.json").read_text())
    finetunes = {"amc_kd": ("amc", "kd"), "amc_ce": ("amc", "ce"), "uniform_kd": ("uniform", "kd")}
    for name, (source, kind) in finetunes.items():
        if not (root / name / "summary.json").is_file():
            stage(
                "amc.finetune",
                [
                    f"checkpoint={root / source / 'pruned.pt'}",
                    f"data={cfg.data_group}",
                    f"model={cfg.model_group}",
                    f"distill={kind}",
                    f"train.epochs={cfg.finetune_epochs}",
                    f"logger={cfg.logger_group}",
                    f"seed={cfg.seed}",
                ],
                root / name,
            )
    return report(root, strategy)


def report(root: Path, strategy: dict[str, Any]) -> dict[str, Any]:
    uniform = json.loads((root / "uniform" / "strategy.json").read_text())
    ft = {name: json.loads((root / name / "summary.json").read_text()) for name in ("amc_kd", "amc_ce", "uniform_kd")}
    rows = [
        ("base", strategy["base_macs"], strategy.get("base_test_top1")),
        ("uniform (reconstructed)", uniform["macs"], uniform["test_top1"]),
        ("uniform + KD", uniform["macs"], ft["uniform_kd"]["last"]["test_top1"]),
        ("AMC (reconstructed)", strategy["macs"], strategy["test_top1"]),
        ("AMC + CE", strategy["macs"], ft["amc_ce"]["last"]["test_top1"]),
        ("AMC + KD", strategy["macs"], ft["amc_kd"]["last"]["test_top1"]),
    ]
    lines = ["| model | MACs | MACs / base | test top-1 (%) |", "|---|---|---|---|"]
    for label, macs, acc in rows:
        acc_text = f"{acc:.2f}" if acc is not None else "—"
        lines.append(f"| {label} | {macs:,} | {macs / strategy['base_macs']:.4f} | {acc_text} |")
    table = "\n".join(lines)
    write_text_atomic(root / "report.md", table + "\n")
    plot_accuracy_vs_macs(
        [(r[0], r[1], r[2]) for r in rows if r[2] is not None],
        root / "report.png",
        "test top-1 vs MACs (FLOPs = 2 x MACs)",
    )
    log.info(table)
    return {"rows": rows}
