"""A given channel list or strategy.json applied to a base checkpoint (``amc.export``): the physically
pruned network before and after least squares, with MACs, params and accuracies of each.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from amc.data import build_data, calibration_images, stack_dataset
from amc.errors import ConfigError
from amc.io import write_json_atomic
from amc.models import save_checkpoint
from amc.networks import first_conv_in_channels, load_model_for_data
from amc.pruning.apply import keep_indices, reconstruction_overrides
from amc.pruning.reconstruction import OpenLoopReconstructor, unreconstructed
from amc.pruning.slicing import SELECTIONS, check_channels, slice_model
from amc.pruning.structure import PrunableStructure, analyse
from amc.runtime.process import seed_everything, set_threads
from amc.settings import ExportConfig
from amc.training.distributed import pick_device
from amc.training.evaluation import evaluate, tensor_batches

log = logging.getLogger(__name__)


def strategy_file(cfg: ExportConfig) -> dict[str, Any] | None:
    if cfg.strategy is None:
        return None
    path = Path(cfg.strategy)
    if not path.is_file():
        raise ConfigError(f"strategy file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise ConfigError(f"{path} is not JSON (want a search's strategy.json)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a strategy.json with a 'channels' list")
    return data


def prune_residual_of(cfg: ExportConfig) -> bool:
    """As asked, else as the strategy file's search had it, else true (the search's default)."""
    if cfg.prune_residual is not None:
        return bool(cfg.prune_residual)
    saved = strategy_file(cfg)
    return bool(saved.get("prune_residual", True)) if saved else True


def channels_from(cfg: ExportConfig) -> list[int]:
    if cfg.channels is not None and cfg.strategy is not None:
        raise ConfigError("give either channels=[...] or strategy=PATH, not both")
    if cfg.channels is not None:
        return [int(c) for c in cfg.channels]
    if cfg.strategy is not None:
        try:
            return [int(c) for c in strategy_file(cfg)["channels"]]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{cfg.strategy} is not a strategy.json with a 'channels' list") from None
    raise ConfigError("say what to keep: channels=[c0,c1,...] (one count per decision point) or strategy=strategy.json")


def selection_of(cfg: ExportConfig) -> str:
    """As asked, else as the strategy file's search ranked channels, else l1."""
    saved = strategy_file(cfg) or {}
    selection = cfg.selection or str(saved.get("selection", "l1"))
    if selection not in SELECTIONS:
        raise ConfigError(f"unknown channel selection {selection!r}; use one of {', '.join(SELECTIONS)}")
    return selection


def saved_keep(cfg: ExportConfig, structure: PrunableStructure, channels: list[int]) -> list[torch.Tensor] | None:
    """The channel indices the search itself kept, when the strategy file has them for this selection:
    a data-driven ranking (lsq) is then taken as scored, not recomputed from other calibration images."""
    saved = strategy_file(cfg) or {}
    kept = saved.get("kept_channels")
    if not kept or saved.get("selection", "l1") != selection_of(cfg):
        return None
    try:
        keep = [torch.tensor(sorted({int(i) for i in k}), dtype=torch.long) for k in kept]
    except (TypeError, ValueError):
        raise ConfigError(f"{cfg.strategy}: kept_channels is not a list of index lists") from None
    fits = len(keep) == len(channels) and all(
        len(k) == c and int(k[0]) >= 0 and int(k[-1]) < w
        for k, c, w in zip(keep, channels, structure.widths, strict=True)
    )
    if not fits:
        raise ConfigError(f"{cfg.strategy}: kept_channels do not match its channels or this model's widths")
    return keep


def export_strategy(cfg: ExportConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (the base model to prune) is required")
    base = load_model_for_data(cfg.checkpoint, cfg.model, cfg.data).eval()
    image_size = int(base.checkpoint_metadata.get("image_size", 224))
    in_channels = first_conv_in_channels(base)
    structure = analyse(base, (1, in_channels, image_size, image_size), prune_residual_of(cfg))
    channels = check_channels(structure, channels_from(cfg))
    selection = selection_of(cfg)
    images = None
    if cfg.reconstruct:
        data_kwargs = {**asdict(cfg.data), "resize": image_size}
        images = calibration_images(data_kwargs, cfg.calibration_images, cfg.calibration_augment, cfg.seed)
    keep = saved_keep(cfg, structure, channels)
    open_loop = None  # statistics an lsq ranking collects, reused by an open-loop refit
    if keep is None:
        if selection == "lsq" and images is not None:
            open_loop = OpenLoopReconstructor(base, structure, images, cfg.points_per_image, cfg.seed)
        keep = keep_indices(base, structure, channels, selection, cfg.seed, open_loop.stats if open_loop else None)
    plain = slice_model(base, structure, keep)

    result: dict[str, Any] = {
        "channels": channels,
        "base_macs": structure.macs(structure.widths),
        "macs": structure.macs(channels),
        "base_params": structure.params(structure.widths),
        "params": structure.params(channels),
        "selection": selection,
        "prune_residual": structure.prune_residual,
    }
    result["macs_ratio"] = result["macs"] / result["base_macs"]
    pruned, timings = plain, {}
    if cfg.reconstruct:
        t0 = time.perf_counter()
        overrides = reconstruction_overrides(
            base, structure, keep, cfg.reconstruction, images, cfg.points_per_image, cfg.seed, open_loop
        )
        pruned = slice_model(base, structure, keep, overrides)
        timings["reconstruction_s"] = time.perf_counter() - t0
        result.update(
            calibration_images=len(images),
            points_per_image=cfg.points_per_image,
            reconstruction=cfg.reconstruction,
            not_reconstructed=unreconstructed(base, structure),
            **timings,
        )

    if cfg.evaluate:
        device = pick_device(cfg.device)
        splits = build_data(**{**asdict(cfg.data), "augment": False, "resize": image_size})
        for split in ("search-val", "test"):
            x, y = stack_dataset(splits.split(split))
            for label, net in (
                ("base", base),
                ("pruned", plain),
                ("reconstructed", pruned if cfg.reconstruct else None),
            ):
                if net is not None:
                    acc = evaluate(net.to(device), tensor_batches(x, y, 500), device)["top1"]
                    result[f"{label}_{split.replace('-', '_')}_top1"] = acc

    output = Path(cfg.output) if cfg.output else run_dir / "pruned.pt"
    if output.exists() and not cfg.overwrite:
        raise ConfigError(f"{output} exists; choose another output= or pass overwrite=true")
    save_checkpoint(
        pruned.cpu(),
        output,
        base_checkpoint=str(cfg.checkpoint),
        data=cfg.data.name,
        image_size=image_size,
        **result,
    )
    write_json_atomic(run_dir / "export_summary.json", result)
    print_summary(result, output)
    return result


def print_summary(r: dict[str, Any], output: Path) -> None:
    log.info(f"channels per decision point: {r['channels']}")
    log.info(
        f"MACs {r['macs']:,} of {r['base_macs']:,} ({100 * r['macs_ratio']:.2f} %; FLOPs = 2 x MACs), "
        f"params {r['params']:,} of {r['base_params']:,}"
    )
    for split in ("search_val", "test"):
        parts = [
            f"{label} {r[f'{label}_{split}_top1']:.2f} %"
            for label in ("base", "pruned", "reconstructed")
            if f"{label}_{split}_top1" in r
        ]
        if parts:
            log.info(f"{split.replace('_', '-')} top-1: " + ", ".join(parts))
    if r.get("not_reconstructed"):
        left = "; ".join(f"{k} ({v})" for k, v in r["not_reconstructed"].items())
        log.info(f"left sliced, not refit by least squares: {left}")
    if "reconstruction_s" in r:
        log.info(
            f"reconstruction: {r['reconstruction']} loop, {r['calibration_images']} images x "
            f"{r['points_per_image']} points, {r['reconstruction_s']:.1f} s"
        )
    log.info(f"wrote {output}")
