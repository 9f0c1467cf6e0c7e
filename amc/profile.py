"""``python -m amc.profile model=... | checkpoint=...``: per-layer MACs and params as a table."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from amc.config import settings_of
from amc.entry import entry_point
from amc.models import create_model, load_checkpoint
from amc.networks import builder_name, first_conv_in_channels, user_checkpoint_options
from amc.pruning.counting import profile
from amc.settings import ProfileConfig

log = logging.getLogger(__name__)


@entry_point("profile")
def main(cfg: DictConfig) -> None:
    settings: ProfileConfig = settings_of(cfg)
    if settings.checkpoint:
        model = load_checkpoint(
            settings.checkpoint, name=settings.checkpoint_model, **user_checkpoint_options(settings.model)
        )
        image_size = settings.image_size or model.checkpoint_metadata.get("image_size", 224)
        source = settings.checkpoint
    else:
        name = builder_name(settings.model)
        model = create_model(name, source=settings.model.source, **settings.model.kwargs)
        image_size = settings.image_size or 224
        source = f"{name} {settings.model.kwargs or ''}"
    size = (1, first_conv_in_channels(model), image_size, image_size)
    log.info(f"{source} at input {tuple(size)} (per image):")
    log.info(profile(model, input_size=size).table())


if __name__ == "__main__":
    main()
