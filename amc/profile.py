"""``python -m amc.profile model=... | checkpoint=...``: per-layer MACs and params as a table."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

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


class _AlsoTheApisProfile(types.ModuleType):
    """``amc.profile`` names this command's module once something imports it (the import system binds the submodule
    over the package's attribute), and the API's :func:`amc.api.profile` before that: calling it is the API's."""

    def __call__(self, model: Any, example_input: Any) -> Any:
        from amc.api.profiling import profile as api_profile

        return api_profile(model, example_input)


sys.modules[__name__].__class__ = _AlsoTheApisProfile

if __name__ == "__main__":
    main()
