"""The base network a search or a fine-tune starts from: a given checkpoint, or one trained once and cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from amc.config import load_model_for_data, model_kwargs, to_plain
from amc.data import build_data
from amc.distributed import Dist, pick_device
from amc.tracking import Tracker
from amc.training import TrainConfig, fit
from models import create_model, load_checkpoint


def cached_base_path(cfg: DictConfig) -> Path:
    train = cfg.base_training
    name = f"{cfg.data.name}_{cfg.model.name}_e{train.epochs}_s{cfg.seed}.pt"
    return Path(str(cfg.cache_dir)).expanduser() / "base_models" / name


def obtain_base_model(cfg: DictConfig) -> tuple[nn.Module, str]:
    """Load ``cfg.checkpoint``; without one, train a base model on ``cfg.data`` once and cache it."""
    if cfg.checkpoint:
        return load_model_for_data(cfg.checkpoint, cfg.model, cfg.data), str(cfg.checkpoint)
    path = cached_base_path(cfg)
    if path.is_file():
        print(f"using the cached base model {path}")
        return load_checkpoint(path), str(path)
    print(
        f"no checkpoint= given: training a base {cfg.model.name} on {cfg.data.name} for "
        f"{cfg.base_training.epochs} epoch(s) once; it is cached at {path} for the next run"
    )
    data = build_data(**to_plain(cfg.data))
    model = create_model(cfg.model.name, **model_kwargs(cfg.model, data.num_classes, data.in_channels, data.image_size))
    work = path.with_suffix(".run")
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    train_cfg = TrainConfig.from_mapping({**to_plain(cfg.base_training), "seed": cfg.seed})
    meta = {
        "data": cfg.data.name,
        "image_size": data.image_size,
        "seed": cfg.seed,
        "job": "base training for amc.search",
    }
    fit(
        model,
        data,
        train_cfg,
        work,
        Dist(device=pick_device(cfg.device)),
        Tracker("none", work, {}),
        metadata=meta,
        resume=True,
        description="base",
    )
    shutil.copyfile(work / "best.pt", path)
    return load_checkpoint(path), str(path)
