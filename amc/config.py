"""Helpers every Hydra entry point shares: run dir, resolved config, seeding, model kwargs from data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from amc.errors import ConfigError
from amc.io import write_text_atomic


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
    write_text_atomic(path, OmegaConf.to_yaml(cfg, resolve=True))


def to_plain(cfg: Any) -> Any:
    return (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | type(OmegaConf.create([]))) else cfg
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


TORCHVISION_PREFIX = "torchvision.models."

# ``${amc_or:${resume},runs/search/...}``: a resumed job writes into the dir it resumes, so Hydra makes no
# stray new run dir for it (registered here, on import by every entry point, before Hydra composes).
OmegaConf.register_new_resolver(
    "amc_or", lambda value, default: default if value in (None, "") else value, replace=True
)


def builder_name(model_cfg: DictConfig) -> str:
    """What ``models.create_model`` builds: ``model._target_`` (torchvision or a user's builder) or a registry name."""
    if OmegaConf.is_missing(model_cfg, "_target_"):
        raise ConfigError("model=custom needs model._target_=pkg.module.build_fn (any importable builder)")
    target = model_cfg.get("_target_")
    if not target:
        return str(model_cfg.name)
    target = str(target)
    if target.startswith(TORCHVISION_PREFIX):
        import torchvision.models

        name = target[len(TORCHVISION_PREFIX) :]
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise ConfigError(
                f"unknown torchvision classification model {name!r}; e.g. {', '.join(known[:8])}, ... "
                f"({len(known)} in all: torchvision.models.list_models(module=torchvision.models))"
            )
    from models import resolve_builder

    resolve_builder(target)  # an unknown or unimportable builder fails now, before any data or training
    return target


def build_model(model_cfg: DictConfig, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A fresh model for a dataset: the builder of ``model_cfg`` with classes/channels from the data."""
    from models import create_model

    return create_model(builder_name(model_cfg), **model_kwargs(model_cfg, num_classes, in_channels, image_size))


def model_and_data(model_cfg: DictConfig, data_cfg: DictConfig, **data_overrides: Any):
    """A fresh model of ``model_cfg`` and the dataset it trains on, resized where the model needs it."""
    from amc.data import build_data

    data = build_data(**{**to_plain(data_cfg), **data_overrides})
    model = build_model(model_cfg, data.num_classes, data.in_channels, data.image_size)
    size = fit_input_size(model, data.in_channels, data.image_size)
    if size != data.image_size:
        native = f"{data_cfg.name}'s {data.image_size} px"
        print(f"input size: {size} px (the model cannot run on {native}; images are resized)")
        data = build_data(**{**to_plain(data_cfg), **data_overrides, "resize": size})
    return model, data


def fit_input_size(model: nn.Module, in_channels: int, image_size: int) -> int:
    """The data's own image size if the model runs on it, else the smallest of 16/32/64/128/224 px it takes."""
    candidates = [image_size] + [s for s in (16, 32, 64, 128, 224) if s > image_size]
    param = next(model.parameters())
    was = model.training
    model.eval()
    try:
        for size in candidates:
            try:
                with torch.no_grad():
                    model(torch.zeros(1, in_channels, size, size, device=param.device))
                return size
            except RuntimeError:
                continue
    finally:
        model.train(was)
    raise ConfigError(f"the model runs on none of the input sizes {candidates} px with {in_channels} channel(s)")


def model_kwargs(model_cfg: DictConfig, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """The model's constructor arguments, with the dataset filling what the model config leaves out."""
    kwargs = dict(to_plain(model_cfg.get("kwargs")) or {})
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_channels", in_channels)
    if model_cfg.get("supports_small_input", False):
        kwargs.setdefault("small_input", image_size <= 64)
    return kwargs


def first_conv_in_channels(model: nn.Module) -> int:
    """The channels a network reads: its first Conv2d's input channels (3 when it has none)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def check_at_least(cfg: DictConfig, minimums: dict[str, float], optional: tuple[str, ...] = ()) -> None:
    """Every numeric option ``key`` (dotted) is a number ≥ its minimum (``optional`` ones may be null)."""
    for key, minimum in minimums.items():
        value = OmegaConf.select(cfg, key)
        if value is None and key in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            null = " (or null)" if key in optional else ""
            raise ConfigError(f"{key} must be a number ≥ {minimum:g}{null}, got {value!r}")


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
    model = load_checkpoint(path, name=builder_name(model_cfg), **kwargs)
    model.checkpoint_metadata.setdefault("image_size", info["image_size"])
    return model
