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

from amc.config import FinishedRun, start_run
from amc.entry import entry_point
from amc.networks import count_weighted_layers
from amc.runtime.onednn_cache import bound_primitive_cache
from amc.settings import SearchConfig
from amc.strategy.checks import check_inputs
from amc.strategy.loop import FINISHED_FILES, RESULT_FILES, search

log = logging.getLogger(__name__)


@entry_point("search")
def main(cfg: DictConfig) -> float | None:
    try:
        settings, run_dir = start_run(cfg, RESULT_FILES, "search", finished=FINISHED_FILES, check=check_search)
    except FinishedRun as done:
        log.info(f"{done.run_dir}: this search has finished; its results are kept (on_existing=continue)")
        return finished_metric(done.run_dir)
    return metric_of(search(settings, run_dir))


def check_search(settings: SearchConfig) -> None:
    """Before any network runs in this process: bound oneDNN's kernel cache, then check every input."""
    bound_primitive_cache(count_weighted_layers(settings.model, settings.data, settings.checkpoint))
    check_inputs(settings)


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
