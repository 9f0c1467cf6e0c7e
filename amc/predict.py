"""``python -m amc.predict data.root=food-11 model_file=model_uint8.pt output=pred.csv``: HW7's test script.

Checks the model file against the size limit first (HW7: 300,000 bytes, else the score is 0),
decodes it, predicts the images of ``testing/`` in sorted file-name order and writes ``Id,label``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from amc.config import set_threads
from amc.data import food11_split, food11_transforms
from amc.errors import ConfigError, user_errors_exit
from amc.hw7.quantization import load_quantized
from models import load_checkpoint, read_checkpoint


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
def predict(cfg: DictConfig) -> Path:
    set_threads(cfg.get("threads"))
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
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Id", "label"])
        writer.writerows(enumerate(labels))
    print(f"{path} ({size:,} bytes): predicted {len(labels)} images of {cfg.data.root}/testing -> {output}")
    return output


@hydra.main(config_path="../conf", config_name="predict", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
