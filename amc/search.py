"""``python -m amc.search flops_budget=0.5``: AMC's reinforcement-learning channel search.

Writes into its run dir: ``config.yaml``, ``episodes.jsonl`` / ``episodes.csv`` (every episode),
``strategy.json`` (the best strategy; the format ``amc.export strategy=`` takes), ``pruned.pt``
(the best strategy, physically pruned and reconstructed), and plots. ``resume=RUN_DIR`` continues
a killed search from its last finished episode. The search itself: ``amc.strategy.loop``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import resumed_config, run_dir_of, save_resolved_config, settings_of
from amc.errors import ConfigError, one_line_config_errors, user_errors_exit
from amc.io import refuse_finished_run
from amc.networks import count_weighted_layers
from amc.runtime import bound_primitive_cache
from amc.settings import SearchConfig
from amc.strategy.checks import check_inputs
from amc.strategy.loop import FINISHED_FILES, RESULT_FILES, search


@one_line_config_errors
@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    settings: SearchConfig = settings_of(cfg)
    resuming = settings.resume
    if resuming:
        run_dir = run_dir_of(settings.resume)
        if all((run_dir / name).exists() for name in FINISHED_FILES):
            raise ConfigError(
                f"resume={run_dir}: this search has finished ({' and '.join(FINISHED_FILES)} hold its results, "
                "which a resume would write over); start a new run in another hydra.run.dir"
            )
        cfg = resumed_config(cfg, SearchConfig, run_dir)
        settings = settings_of(cfg)
    # before any network runs in this process (the input checks run some)
    bound_primitive_cache(count_weighted_layers(settings.model, settings.data, settings.checkpoint))
    check_inputs(settings)
    if resuming:
        save_resolved_config(cfg, run_dir)  # as resume-config.yaml: the original stays
    else:
        run_dir = run_dir_of()
        refuse_finished_run(run_dir, RESULT_FILES, "search")
        save_resolved_config(cfg, run_dir)
    search(settings, run_dir)


if __name__ == "__main__":
    main()
