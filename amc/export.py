"""``python -m amc.export checkpoint=BASE channels=[...] | strategy=strategy.json``: a physically pruned checkpoint.

Prints and saves (``export_summary.json``) the cfg, MACs, params and search-val / test top-1 of
the base, the pruned network before reconstruction and after it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import start_run
from amc.errors import one_line_config_errors, user_errors_exit
from amc.strategy.export import export_strategy


@one_line_config_errors
@hydra.main(config_path="conf", config_name="export", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    export_strategy(settings, run_dir)


if __name__ == "__main__":
    main()
