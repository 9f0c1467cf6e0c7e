"""``python -m amc.quantize checkpoint=MODEL data=...``: HW7 part 4, weight quantization with sizes and accuracy.

Writes ``model_fp32.pt``, ``model_fp16.pt``, ``model_uint8.pt`` (bytes and test top-1 of each in
``quantization.json``) and, beyond the course, PyTorch's int8 post-training quantization with its
measured CPU latency against float32.
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig

from amc.config import run_dir_of, save_resolved_config, seed_everything, set_threads, to_plain
from amc.data import build_data, stack_dataset
from amc.errors import ConfigError, user_errors_exit
from amc.hw7.quantization import cpu_latency_ms, int8_ptq, load_quantized, save_quantized
from amc.io import write_json_atomic
from amc.training.evaluation import evaluate, tensor_batches
from models import load_checkpoint

NAMES = {32: "fp32", 16: "fp16", 8: "uint8"}


def quantize(cfg: DictConfig) -> dict:
    set_threads(cfg.get("threads"))
    seed_everything(cfg.seed)
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH (the model to quantize) is required")
    model = load_checkpoint(cfg.checkpoint).eval()
    data = build_data(**{**to_plain(cfg.data), "augment": False})
    x, y = stack_dataset(data.test)
    run_dir = run_dir_of(cfg)
    save_resolved_config(cfg, run_dir)
    result: dict = {"params": sum(p.numel() for p in model.parameters())}
    for bits in (32, 16, 8):
        path = run_dir / f"model_{NAMES[bits]}.pt"
        size = save_quantized(model, path, bits)
        top1 = evaluate(load_quantized(path), tensor_batches(x, y, 256))["top1"]
        result[NAMES[bits]] = {"bytes": size, "test_top1": top1, "file": str(path)}
        print(
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
        print(
            f"int8 PTQ (torch.ao, x86): test top-1 {q['test_top1']:.2f} %, CPU latency batch 1 "
            f"{q['fp32_latency_ms']:.2f} ms fp32 -> {q['int8_latency_ms']:.2f} ms int8"
        )
    write_json_atomic(run_dir / "quantization.json", result)
    return result


@hydra.main(config_path="../conf", config_name="quantize", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    quantize(cfg)


if __name__ == "__main__":
    main()
