"""``python -m amc.train model=mobilenet_v1 data=fashion_mnist``: train a base model (the network AMC
later compresses), optionally by distillation from ``teacher=``; ``resume=RUN_DIR`` continues it.
Runs under ``torchrun --nproc_per_node=N -m amc.train ...`` as DistributedDataParallel.
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import start_run
from amc.entry import entry_point
from amc.training.jobs import train_network


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best search-val top-1 (%): what Hydra's sweepers optimise."""
    settings, run_dir = start_run(cfg)
    summary = train_network(settings, run_dir)
    return (summary.get("best") or {}).get("search_val_top1")


if __name__ == "__main__":
    main()
