"""``python -m amc.export checkpoint=BASE channels=[...] | strategy=strategy.json``: a physically pruned checkpoint.

Prints and saves (``export_summary.json``) the cfg, MACs, params and search-val / test top-1 of
the base, the pruned network before reconstruction and after it.
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import start_run
from amc.entry import entry_point
from amc.strategy.export import export_strategy


@entry_point("export")
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    export_strategy(settings, run_dir)


if __name__ == "__main__":
    main()
