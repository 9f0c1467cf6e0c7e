"""``python -m amc.train model=mobilenet_v1 data=fashion_mnist``: train a base model (the network AMC
later compresses), optionally by distillation from ``teacher=``; ``resume=RUN_DIR`` continues it.
Runs under ``torchrun --nproc_per_node=N -m amc.train ...`` as DistributedDataParallel.
"""

from __future__ import annotations

from amc.entry import job_entry_point
from amc.training.jobs import best_search_val_top1, train_network

main = job_entry_point("train", train_network, metric=best_search_val_top1)

if __name__ == "__main__":
    main()
