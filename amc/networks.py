"""The network a run works on, from its settings: built fresh for a dataset, or loaded from a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from amc.errors import ConfigError
from amc.settings import DataConfig, ModelConfig

log = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision.models."


def builder_name(model_cfg: ModelConfig) -> str:
    """What ``models.create_model`` builds: ``model._target_`` (torchvision or a user's builder) or a registry name."""
    target = model_cfg._target_
    if not target and model_cfg.name == "custom":
        raise ConfigError("model=custom needs model._target_=pkg.module.build_fn (any importable builder)")
    if not target:
        return model_cfg.name
    if target.startswith(TORCHVISION_PREFIX):
        import torchvision.models

        name = target[len(TORCHVISION_PREFIX) :]
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise ConfigError(
                f"unknown torchvision classification model {name!r}; e.g. {', '.join(known[:8])}, ... "
                f"({len(known)} in all: torchvision.models.list_models(module=torchvision.models))"
            )
    from amc.models import resolve_builder

    resolve_builder(target, model_cfg.source)  # an unknown or unimportable builder fails now, before any work
    return target


def model_kwargs(model_cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """The model's constructor arguments, with the dataset filling what the model config leaves out."""
    kwargs = dict(model_cfg.kwargs or {})
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_channels", in_channels)
    if model_cfg.supports_small_input:
        kwargs.setdefault("small_input", image_size <= 64)
    return kwargs


def build_model(model_cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A fresh model for a dataset: the builder of ``model_cfg`` with classes/channels from the data."""
    from amc.models import create_model

    return create_model(
        builder_name(model_cfg),
        source=model_cfg.source,
        **model_kwargs(model_cfg, num_classes, in_channels, image_size),
    )


def user_named_builders(model_cfg: ModelConfig) -> list[str]:
    """The builder this run's config names (``model._target_=``): a checkpoint may name it and be rebuilt with it.
    Any other builder a checkpoint names beyond the registry and torchvision's classifiers is refused."""
    return [model_cfg._target_] if model_cfg._target_ else []


def user_checkpoint_options(model_cfg: ModelConfig) -> dict[str, Any]:
    """What ``load_checkpoint`` may trust for this run: the builder it names and the ``.py`` file holding it."""
    return {"trusted_builders": user_named_builders(model_cfg), "builder_source": model_cfg.source}


def fit_input_size(model: nn.Module, in_channels: int, image_size: int) -> int:
    """The data's own image size if the model runs on it, else the smallest of 16/32/64/128/224 px it takes."""
    candidates = [image_size] + [s for s in (16, 32, 64, 128, 224) if s > image_size]
    param = next(model.parameters())
    was = model.training
    model.eval()
    refusal: Exception | None = None
    try:
        for size in candidates:
            try:
                with torch.no_grad():
                    model(torch.zeros(1, in_channels, size, size, device=param.device))
                return size
            # a shape mismatch is a RuntimeError in torch's ops; a model that checks its input size itself
            # (torchvision's ViT and Swin, via torch._assert) raises AssertionError, others ValueError
            except (RuntimeError, AssertionError, ValueError) as exc:
                refusal = refusal or exc  # the refusal at the data's own size says most
    finally:
        model.train(was)
    why = " ".join(str(refusal).split())[:200]
    raise ConfigError(
        f"the model runs on none of the input sizes {candidates} px with {in_channels} channel(s); "
        f"at {image_size} px: {type(refusal).__name__}: {why}"
    )


def model_and_data(model_cfg: ModelConfig, data_cfg: DataConfig, **data_overrides: Any):
    """A fresh model of ``model_cfg`` and the dataset it trains on, resized where the model needs it."""
    from amc.data import build_data

    data = build_data(**{**asdict(data_cfg), **data_overrides})
    model = build_model(model_cfg, data.num_classes, data.in_channels, data.image_size)
    size = fit_input_size(model, data.in_channels, data.image_size)
    if size != data.image_size:
        log.info(
            f"input size: {size} px (the model cannot run on {data_cfg.name}'s {data.image_size} px; "
            "images are resized)"
        )
        data = build_data(**{**asdict(data_cfg), **data_overrides, "resize": size})
    return model, data


def first_conv_in_channels(model: nn.Module) -> int:
    """The channels a network reads: its first Conv2d's input channels (3 when it has none)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def load_model_for_data(
    path: str, model_cfg: ModelConfig, data_cfg: DataConfig, *, runs_on_data: bool = True
) -> nn.Module:
    """Load ``path``: our checkpoints carry their architecture; a bare state_dict is read as ``model_cfg``
    with classes/channels/small-input filled from the dataset. ``runs_on_data``: the caller scores or trains it
    on ``data_cfg``'s images, so a checkpoint trained on other data is refused (:func:`check_trained_on`)."""
    from amc.data import dataset_info
    from amc.models import FORMAT, load_checkpoint, read_checkpoint

    data = read_checkpoint(path)
    if data.get("format") == FORMAT:
        model = load_checkpoint(path, **user_checkpoint_options(model_cfg))
        return check_trained_on(model, data_cfg, path) if runs_on_data else model
    info = dataset_info(data_cfg.name, data_cfg.crop)
    kwargs = model_kwargs(model_cfg, info["num_classes"], info["in_channels"], info["image_size"])
    model = load_checkpoint(path, name=builder_name(model_cfg), builder_source=model_cfg.source, **kwargs)
    model.checkpoint_metadata.setdefault("image_size", info["image_size"])
    return model


def check_trained_on(model: nn.Module, data_cfg: DataConfig, path: str | Path) -> nn.Module:
    """``model``, if the data its checkpoint records having been trained on is ``data_cfg``'s: scored on other
    images of the same shape (Fashion-MNIST and digits are both 10 classes of one channel) it runs, and every
    accuracy it gives means nothing."""
    trained_on = getattr(model, "checkpoint_metadata", {}).get("data")
    if trained_on and trained_on != data_cfg.name:
        raise ConfigError(f"{path} was trained on {trained_on}, not on {data_cfg.name}: pass data={trained_on}")
    return model


def count_weighted_layers(model_cfg: ModelConfig, data_cfg: DataConfig, checkpoint: str | None) -> int | None:
    """How many conv and linear layers the network of a run has, found without running it; ``None`` where that
    cannot be told (a missing checkpoint, an unknown model: the run's input checks report those next)."""
    from amc.data import dataset_info

    try:
        if checkpoint:
            model = load_model_for_data(checkpoint, model_cfg, data_cfg)
        else:
            info = dataset_info(data_cfg.name, data_cfg.crop)
            model = build_model(model_cfg, info["num_classes"], info["in_channels"], info["image_size"])
    except Exception:  # only a sizing hint: check_inputs gives the one-line error for a bad input
        return None
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
