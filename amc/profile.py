"""``python -m amc.profile model=... | checkpoint=...``: per-layer MACs and params as a table."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import builder_name, first_conv_in_channels, to_plain
from amc.errors import user_errors_exit
from amc.pruning.cost import profile
from models import create_model, load_checkpoint


def run(cfg: DictConfig) -> None:
    if cfg.checkpoint:
        model = load_checkpoint(cfg.checkpoint, name=cfg.get("checkpoint_model"))
        image_size = cfg.image_size or model.checkpoint_metadata.get("image_size", 224)
        source = cfg.checkpoint
    else:
        name = builder_name(cfg.model)
        model = create_model(name, **(to_plain(cfg.model.kwargs) or {}))
        image_size = cfg.image_size or 224
        source = f"{name} {to_plain(cfg.model.kwargs) or ''}"
    size = (1, first_conv_in_channels(model), image_size, image_size)
    report = profile(model, input_size=size)
    print(f"{source} at input {tuple(size)} (per image):")
    print(report.table())


@hydra.main(config_path="../conf", config_name="profile", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
