"""Helpers every Hydra entry point shares: run dir, resolved config, seeding, model kwargs from data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from amc.errors import ConfigError


def run_dir_of(cfg: DictConfig) -> Path:
    """The run's output folder: ``resume=DIR`` when resuming, else Hydra's run dir."""
    if cfg.get("resume"):
        path = Path(str(cfg.resume))
        if not path.is_dir():
            raise ConfigError(f"resume={path}: no such run dir")
        return path
    from hydra.core.hydra_config import HydraConfig

    path = Path(HydraConfig.get().runtime.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_resolved_config(cfg: DictConfig, run_dir: Path, name: str = "config.yaml") -> None:
    """Write the fully resolved config (the run's recipe) into the run dir; never overwrite a resumed one."""
    path = run_dir / name
    if path.exists() and cfg.get("resume"):
        path = run_dir / f"resume-{name}"
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))


def to_plain(cfg: Any) -> Any:
    return (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | type(OmegaConf.create([]))) else cfg
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_kwargs(model_cfg: DictConfig, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """The model's constructor arguments, with the dataset filling what the model config leaves out."""
    kwargs = dict(to_plain(model_cfg.get("kwargs")) or {})
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_channels", in_channels)
    if model_cfg.get("supports_small_input", False):
        kwargs.setdefault("small_input", image_size <= 64)
    return kwargs


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def load_model_for_data(path: str, model_cfg: DictConfig, data_cfg: DictConfig):
    """Load ``path``: our checkpoints carry their architecture; a bare state_dict is read as ``model_cfg``
    with classes/channels/small-input filled from the dataset."""
    from amc.data import dataset_info
    from models import FORMAT, load_checkpoint, read_checkpoint

    data = read_checkpoint(path)
    if data.get("format") == FORMAT:
        return load_checkpoint(path)
    info = dataset_info(data_cfg.name, data_cfg.get("crop"))
    kwargs = model_kwargs(model_cfg, info["num_classes"], info["in_channels"], info["image_size"])
    model = load_checkpoint(path, name=model_cfg.name, **kwargs)
    model.checkpoint_metadata.setdefault("image_size", info["image_size"])
    return model
