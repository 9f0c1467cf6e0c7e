"""``python -m amc.finetune checkpoint=PRUNED``: recover a pruned network's accuracy, by distillation by default.

The teacher defaults to the base checkpoint recorded in the pruned checkpoint (by ``amc.search`` or
``amc.export``); ``teacher=PATH`` takes any checkpoint of a registered model. Runs under
``torchrun --nproc_per_node=N -m amc.finetune ...`` as DistributedDataParallel.
"""

from __future__ import annotations

from amc.entry import job_entry_point
from amc.training.jobs import best_search_val_top1, finetune_network

main = job_entry_point("finetune", finetune_network, metric=best_search_val_top1)

if __name__ == "__main__":
    main()
