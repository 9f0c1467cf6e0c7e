"""``python -m amc.search flops_budget=0.5``: AMC's reinforcement-learning channel search.

Writes into its run dir: ``config.yaml``, ``episodes.jsonl`` / ``episodes.csv`` (every episode),
``strategy.json`` (the best strategy; the format ``amc.export strategy=`` takes), ``pruned.pt``
(the best strategy, physically pruned and reconstructed), and plots. ``resume=RUN_DIR`` continues
a killed search from its last finished episode. The search itself: ``amc.strategy.loop``.
"""

from __future__ import annotations

import json
import logging

from omegaconf import DictConfig

from amc.config import resumed_config, run_dir_of, save_resolved_config, settings_of
from amc.entry import entry_point
from amc.errors import ConfigError
from amc.io import refuse_finished_run
from amc.networks import count_weighted_layers
from amc.runtime.onednn_cache import bound_primitive_cache
from amc.settings import SearchConfig
from amc.strategy.checks import check_inputs
from amc.strategy.loop import FINISHED_FILES, RESULT_FILES, search

log = logging.getLogger(__name__)


@entry_point("search")
def main(cfg: DictConfig) -> float | None:
    settings: SearchConfig = settings_of(cfg)
    resuming = settings.resume
    if not resuming and settings.on_existing == "continue" and (run_dir_of() / "config.yaml").is_file():
        resuming = str(run_dir_of())  # a sweep run again: each job continues its own run dir
        if all((run_dir_of() / name).exists() for name in FINISHED_FILES):
            log.info(f"{run_dir_of()}: this search has finished; its results are kept (on_existing=continue)")
            return finished_metric(run_dir_of())
    if resuming:
        run_dir = run_dir_of(resuming)
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
    return metric_of(search(settings, run_dir))


def metric_of(strategy: dict) -> float | None:
    """What a search optimises, returned to Hydra (its Optuna sweeper maximises it): the exported network's
    search-val top-1 after the promotion's fine-tuning when there was one, else its search-val score. Never the
    test split: a sweep tuned on it would report a test score it had selected for."""
    if not strategy:
        return None
    promotion = strategy.get("promotion") or {}
    return float(promotion.get("finetuned_search_val_top1", strategy.get("accuracy")))


def finished_metric(run_dir) -> float | None:
    return metric_of(json.loads((run_dir / "strategy.json").read_text()))


if __name__ == "__main__":
    main()
