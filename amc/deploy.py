"""``python -m amc.deploy checkpoint=PRUNED``: ONNX export, checked with onnxruntime, and base-vs-pruned latency.

Writes ``model.onnx`` and ``deploy_summary.json`` (MACs, max |ONNX − PyTorch|, latency per engine and
batch size, and the ratios to the base network the checkpoint was pruned from).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from amc.config import first_conv_in_channels, run_dir_of, set_threads
from amc.deployment import export_onnx, max_difference, onnx_latency, onnx_session, torch_latency
from amc.errors import ConfigError, user_errors_exit
from amc.io import write_json_atomic
from amc.pruning.cost import profile
from models import load_checkpoint


def measure(model: torch.nn.Module, onnx_path: Path, size: int, cfg: DictConfig) -> dict[str, Any]:
    """ONNX export of ``model``, its agreement with PyTorch, MACs and latency at each batch size."""
    channels = first_conv_in_channels(model)
    generator = torch.Generator().manual_seed(cfg.seed)
    example = torch.randn(max(cfg.batch_sizes), channels, size, size, generator=generator)
    export_onnx(model, example[:1], onnx_path)
    session = onnx_session(onnx_path, cfg.threads)
    rows = []
    for batch in cfg.batch_sizes:
        x = example[:batch].contiguous()
        rows.append(asdict(torch_latency(model, x, cfg.threads, cfg.min_run_s)))
        rows.append(asdict(onnx_latency(session, x, cfg.threads, cfg.min_run_s)))
    return {
        "onnx": str(onnx_path),
        "macs": profile(model, (1, channels, size, size)).macs,
        "max_abs_diff": max_difference(session, model, example[: min(32, len(example))]),
        "latency": rows,
    }


def deploy(cfg: DictConfig) -> dict[str, Any]:
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (a model to deploy, e.g. a search's pruned.pt) is required")
    if not cfg.batch_sizes or min(cfg.batch_sizes) < 1 or cfg.threads < 1:
        raise ConfigError("batch_sizes must be positive integers and threads at least 1")
    set_threads(cfg.threads)
    model = load_checkpoint(cfg.checkpoint).eval()
    size = int(cfg.image_size or model.checkpoint_metadata.get("image_size", 224))
    base_path = cfg.base if cfg.base is not None else model.checkpoint_metadata.get("base_checkpoint")
    run_dir = run_dir_of(cfg)
    summary: dict[str, Any] = {"checkpoint": str(cfg.checkpoint), "image_size": size, "threads": cfg.threads}
    summary["model"] = measure(model, run_dir / "model.onnx", size, cfg)
    if base_path:
        from amc.config import load_model_for_data

        base = load_model_for_data(str(base_path), cfg.model, cfg.data).eval()
        summary["base"] = measure(base, run_dir / "base.onnx", size, cfg)
        summary["ratios"] = ratios(summary["model"], summary["base"])
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
        print(
            f"{label}: {r['onnx']}, MACs {r['macs']:,} per image (FLOPs = 2 x MACs), max |ONNX - PyTorch| "
            f"{r['max_abs_diff']:.2e}"
        )
        for row in r["latency"]:
            print(
                f"  {row['engine']:<12} batch {row['batch']:>4}: {row['median_ms']:.3f} ms median "
                f"(IQR {row['iqr_ms']:.3f}, {row['runs']} runs, {row['threads']} threads)"
            )
    if "ratios" in s:
        print("pruned / base: " + ", ".join(f"{k} {v:.3f}" for k, v in s["ratios"].items()))


@hydra.main(config_path="../conf", config_name="deploy", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    deploy(cfg)


if __name__ == "__main__":
    main()
