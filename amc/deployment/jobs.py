"""The deploy job (``python -m amc.deploy``): a checkpoint exported to ONNX and checked, its MACs, and its latency
in both engines at each batch size, against the base it was pruned from."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from amc.deployment.onnx_export import export_onnx, max_difference, onnx_latency, onnx_session
from amc.errors import ConfigError
from amc.io import write_json_atomic
from amc.models import load_checkpoint
from amc.networks import first_conv_in_channels, load_model_for_data, user_checkpoint_options
from amc.pruning.counting import profile
from amc.runtime.process import set_threads
from amc.settings import DeployConfig
from amc.timing import paired_latency_ratio, torch_latency

log = logging.getLogger(__name__)


def measure(
    model: nn.Module,
    onnx_path: Path,
    size: int,
    batch_sizes: Sequence[int] = (1, 256),
    threads: int = 2,
    min_run_s: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """ONNX export of ``model``, its agreement with PyTorch, MACs and latency at each batch size."""
    channels = first_conv_in_channels(model)
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(max(batch_sizes), channels, size, size, generator=generator)
    export_onnx(model, example[:1], onnx_path)
    session = onnx_session(onnx_path, threads)
    rows = []
    for batch in batch_sizes:
        x = example[:batch].contiguous()
        rows.append(asdict(torch_latency(model, x, threads, min_run_s)))
        rows.append(asdict(onnx_latency(session, x, threads, min_run_s)))
    return {
        "onnx": str(onnx_path),
        "macs": profile(model, (1, channels, size, size)).macs,
        "max_abs_diff": max_difference(session, model, example[: min(32, len(example))]),
        "latency": rows,
    }


def deploy_report(cfg: DeployConfig, run_dir: Path) -> dict[str, Any]:
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (a model to deploy, e.g. a search's pruned.pt) is required")
    if not cfg.batch_sizes:  # each size and threads are range-checked with the settings (amc.settings)
        raise ConfigError("batch_sizes must list at least one batch size, e.g. [1,256]")
    set_threads(cfg.threads)
    threads = torch.get_num_threads()  # threads=null: torch's default, stated in the summary
    model = load_checkpoint(cfg.checkpoint, **user_checkpoint_options(cfg.model)).eval()
    size = int(cfg.image_size or model.checkpoint_metadata.get("image_size", 224))
    base_path = cfg.base if cfg.base is not None else model.checkpoint_metadata.get("base_checkpoint")
    summary: dict[str, Any] = {"checkpoint": str(cfg.checkpoint), "image_size": size, "threads": threads}
    how = (cfg.batch_sizes, threads, cfg.min_run_s, cfg.seed)
    summary["model"] = measure(model, run_dir / "model.onnx", size, *how)
    if base_path:
        # timed on random inputs only: data= says how to read a bare state_dict, not what the base must have seen
        base = load_model_for_data(str(base_path), cfg.model, cfg.data, runs_on_data=False).eval()
        summary["base"] = measure(base, run_dir / "base.onnx", size, *how)
        summary["ratios"] = ratios(summary["model"], summary["base"])
        # Separate medians of two batch-1 timings drift apart on a shared CPU; alternating calls hold still.
        generator = torch.Generator().manual_seed(cfg.seed)
        one = torch.randn(1, first_conv_in_channels(model), size, size, generator=generator)
        alternating = paired_latency_ratio(model, base, one, threads, min_run_s=max(2.0, cfg.min_run_s))
        summary["ratios"]["latency_pytorch_batch1_alternating_fastest"] = alternating
    write_json_atomic(run_dir / "deploy_summary.json", summary)
    print_summary(summary)
    return summary


def ratios(model: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    out = {"macs": model["macs"] / base["macs"]}
    for m, b in zip(model["latency"], base["latency"], strict=True):
        out[f"latency_{m['engine']}_batch{m['batch']}"] = m["median_ms"] / b["median_ms"]
    return out


def print_summary(s: dict[str, Any]) -> None:
    for label in ("model", "base"):
        if label not in s:
            continue
        r = s[label]
        log.info(
            f"{label}: {r['onnx']}, MACs {r['macs']:,} per image (FLOPs = 2 x MACs), max |ONNX - PyTorch| "
            f"{r['max_abs_diff']:.2e}"
        )
        for row in r["latency"]:
            log.info(
                f"  {row['engine']:<12} batch {row['batch']:>4}: {row['median_ms']:.3f} ms median "
                f"(IQR {row['iqr_ms']:.3f}, {row['runs']} runs, {row['threads']} threads)"
            )
    if "ratios" in s:
        log.info("pruned / base: " + ", ".join(f"{k} {v:.3f}" for k, v in s["ratios"].items()))
