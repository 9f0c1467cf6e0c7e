"""``python -m amc.train model=mobilenet_v1 data=fashion_mnist``: train a base model (the network AMC
later compresses), optionally by distillation from ``teacher=``; ``resume=RUN_DIR`` continues it.
Runs under ``torchrun --nproc_per_node=N -m amc.train ...`` as DistributedDataParallel.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import start_run
from amc.errors import one_line_config_errors, user_errors_exit
from amc.training.jobs import train_network


@one_line_config_errors
@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    train_network(settings, run_dir)


if __name__ == "__main__":
    main()
