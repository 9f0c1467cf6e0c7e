"""HW7's jobs behind ``amc.slim``, ``amc.quantize`` and ``amc.predict``: settings in, files and numbers out."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from amc.data import build_data, food11_split, food11_transforms, stack_dataset
from amc.errors import ConfigError
from amc.hw7.quantization import cpu_latency_ms, int8_ptq, load_quantized, save_quantized
from amc.hw7.slimming import slim_student
from amc.io import write_csv_atomic, write_json_atomic
from amc.models import load_checkpoint, read_checkpoint, save_checkpoint
from amc.pruning.counting import count_params
from amc.runtime.process import seed_everything, set_threads
from amc.settings import PredictConfig, QuantizeConfig, SlimConfig
from amc.tracking import Tracker
from amc.training.distributed import setup
from amc.training.evaluation import evaluate, tensor_batches
from amc.training.loop import evaluate_split, fit

log = logging.getLogger(__name__)


def slim_schedule(cfg: SlimConfig, run_dir: Path) -> list[dict]:
    set_threads(cfg.threads)
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (a trained hw7_student) is required")
    model = load_checkpoint(cfg.checkpoint)
    if model.arch["name"] != "hw7_student":
        raise ConfigError(f"network slimming here follows HW7 and needs an hw7_student, got {model.arch['name']}")
    ctx = setup(cfg.device)
    seed_everything(cfg.seed)
    data = build_data(**asdict(cfg.data))
    tracker = Tracker(cfg.logger.kind, run_dir, asdict(cfg), cfg.logger.project, mode=cfg.logger.mode)
    train_cfg = cfg.train
    size = (1, data.in_channels, data.image_size, data.image_size)
    width = float(model.arch["kwargs"].get("width_mult", 1.0))
    rows = []
    for step in range(1, cfg.steps + 1):
        width *= cfg.factor
        model = slim_student(model.cpu(), width, size)
        before = evaluate_split(model.to(ctx.device), data.test, train_cfg, ctx)["top1"]
        step_dir = run_dir / f"step{step}"
        step_dir.mkdir(exist_ok=True)
        summary = fit(
            model,
            data,
            train_cfg,
            step_dir,
            ctx,
            tracker,
            cfg.seed,
            metadata={"width_mult": width},
            description=f"slim {step}/{cfg.steps}",
        )
        model = load_checkpoint(step_dir / "best.pt")
        row = {
            "step": step,
            "width_mult": round(width, 4),
            "params": count_params(model),
            "test_top1_after_slimming": before,
            "test_top1": summary["best"]["test_top1"],
            "search_val_top1": summary["best"]["search_val_top1"],
        }
        rows.append(row)
        log.info(
            f"step {step}: width {width:.4f}, {row['params']:,} params, test top-1 {before:.2f} % after slimming, "
            f"{row['test_top1']:.2f} % after {cfg.train.epochs} epochs of fine-tuning"
        )
    save_checkpoint(model, run_dir / "slimmed.pt", data=cfg.data.name, image_size=data.image_size)
    write_json_atomic(run_dir / "slimming.json", rows)
    tracker.finish()
    return rows


NAMES = {32: "fp32", 16: "fp16", 8: "uint8"}


def quantize_weights(cfg: QuantizeConfig, run_dir: Path) -> dict:
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (the model to quantize) is required")
    model = load_checkpoint(cfg.checkpoint).eval()
    data = build_data(**{**asdict(cfg.data), "augment": False})
    x, y = stack_dataset(data.test)
    result: dict = {"params": sum(p.numel() for p in model.parameters())}
    for bits in (32, 16, 8):
        path = run_dir / f"model_{NAMES[bits]}.pt"
        size = save_quantized(model, path, bits)
        top1 = evaluate(load_quantized(path), tensor_batches(x, y, 256))["top1"]
        result[NAMES[bits]] = {"bytes": size, "test_top1": top1, "file": str(path)}
        log.info(
            f"{NAMES[bits]:>5}: {size:>10,} bytes ({size / result['fp32']['bytes']:.3f} of fp32), "
            f"test top-1 {top1:.2f} %"
        )
    if cfg.int8_ptq:
        calib = stack_dataset(data.train, limit=cfg.calibration_images)[0]
        quantized = int8_ptq(model, calib)
        example = x[:1]
        result["int8_ptq"] = {
            "test_top1": evaluate(quantized, tensor_batches(x, y, 256))["top1"],
            "fp32_latency_ms": cpu_latency_ms(model, example),
            "int8_latency_ms": cpu_latency_ms(quantized, example),
            "threads": torch.get_num_threads(),
        }
        q = result["int8_ptq"]
        log.info(
            f"int8 PTQ (torch.ao, x86): test top-1 {q['test_top1']:.2f} %, CPU latency batch 1 "
            f"{q['fp32_latency_ms']:.2f} ms fp32 -> {q['int8_latency_ms']:.2f} ms int8"
        )
    write_json_atomic(run_dir / "quantization.json", result)
    return result


def check_size(path: Path, max_bytes: int | None) -> int:
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ConfigError(f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit")
    return size


def load_any(path: Path) -> torch.nn.Module:
    return load_quantized(path) if "weights" in read_checkpoint(path) else load_checkpoint(path)


@torch.inference_mode()
def predict_csv(cfg: PredictConfig) -> Path:
    set_threads(cfg.threads)
    path = Path(cfg.model_file)
    size = check_size(path, cfg.max_bytes)
    model = load_any(path).eval()
    _, test_tf = food11_transforms(cfg.crop)
    images = food11_split(Path(cfg.data.root), "testing", test_tf)
    output = Path(cfg.output)
    if output.exists() and not cfg.overwrite:
        raise ConfigError(f"{output} exists; choose another output= or pass overwrite=true")
    labels: list[int] = []
    for i in range(0, len(images), cfg.batch_size):
        batch = torch.stack([images[j][0] for j in range(i, min(i + cfg.batch_size, len(images)))])
        labels += model(batch).argmax(1).tolist()
    write_csv_atomic(output, ["Id", "label"], enumerate(labels))
    log.info(f"{path} ({size:,} bytes): predicted {len(labels)} images of {cfg.data.root}/testing -> {output}")
    return output
