"""``python -m amc.finetune checkpoint=PRUNED``: recover a pruned network's accuracy, by distillation by default.

The teacher defaults to the base checkpoint recorded in the pruned checkpoint (by ``amc.search`` or
``amc.export``); ``teacher=PATH`` takes any checkpoint of a registered model. Runs under
``torchrun --nproc_per_node=N -m amc.finetune ...`` as DistributedDataParallel.
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import start_run
from amc.entry import entry_point
from amc.training.jobs import finetune_network


@entry_point("finetune")
def main(cfg: DictConfig) -> float | None:
    """Returns the best search-val top-1 (%): what Hydra's sweepers optimise."""
    settings, run_dir = start_run(cfg)
    summary = finetune_network(settings, run_dir)
    return (summary.get("best") or {}).get("search_val_top1")


if __name__ == "__main__":
    main()
