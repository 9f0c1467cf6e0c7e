"""``python -m amc.finetune checkpoint=PRUNED``: recover a pruned network's accuracy, by distillation by default.

The teacher defaults to the base checkpoint recorded in the pruned checkpoint (by ``amc.search`` or
``amc.export``); ``teacher=PATH`` takes any checkpoint of a registered model. Runs under
``torchrun --nproc_per_node=N -m amc.finetune ...`` as DistributedDataParallel.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import start_run
from amc.errors import one_line_config_errors, user_errors_exit
from amc.training.jobs import finetune_network


@one_line_config_errors
@hydra.main(config_path="conf", config_name="finetune", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    finetune_network(settings, run_dir)


if __name__ == "__main__":
    main()
