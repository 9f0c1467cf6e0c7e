"""What a search works on: the base network, its structure, the budget, the scorer and the environment."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from amc.data import DataSplits, build_data, calibration_images, stack_dataset
from amc.envs import ChannelPruningEnv
from amc.errors import ConfigError
from amc.pruning.cost_check import refuse_unpredictable_costs
from amc.pruning.structure import PrunableStructure, analyse
from amc.runtime.hardware import eval_dtype
from amc.settings import SearchConfig
from amc.strategy.budget import ActionWall, Constraint, channel_grids, make_constraint
from amc.strategy.checks import constraint_of
from amc.strategy.latency import MEASURED_SLACK, floor_note
from amc.strategy.scoring import ScorerSettings, ScoringImages, StrategyScorer
from amc.training.base_model import obtain_base_model

if TYPE_CHECKING:
    from amc.timing import LatencyTimer

log = logging.getLogger(__name__)


@dataclass
class SearchTask:
    base: nn.Module
    base_path: str  # the base's checkpoint file ("" for a model handed in from Python)
    data: DataSplits | None  # None: the library's user metric, with no dataset behind it
    structure: PrunableStructure
    constraint: Constraint
    scorer: StrategyScorer
    env: ChannelPruningEnv
    latency_timer: LatencyTimer | None = None  # latency budgets: times the new bests and the export
    user_calibration: torch.Tensor | None = None  # the library's calibration inputs, where there is no dataset
    rescore_images: tuple[torch.Tensor, torch.Tensor] | None = None  # all of search-val, when episodes saw a part

    def close(self) -> None:
        if self.latency_timer is not None:
            self.latency_timer.close()


def trained_size(model: nn.Module) -> int | None:
    """The image size a checkpoint was trained at (the data is resized to it when it differs)."""
    size = getattr(model, "checkpoint_metadata", {}).get("image_size")
    return int(size) if size else None


def search_calibration(cfg: SearchConfig, data: DataSplits, count: int) -> torch.Tensor:
    data_kwargs = {**asdict(cfg.data), "resize": data.image_size}
    return calibration_images(data_kwargs, count, cfg.calibration_augment, cfg.seed, splits=data)


def export_calibration(cfg: SearchConfig, task: SearchTask) -> torch.Tensor | None:
    """Calibration images for the final export: more than the search's own, where asked for."""
    count = cfg.export_calibration_images
    if not cfg.reconstruct or count is None or count <= cfg.calibration_images:
        return task.scorer.calibration_images
    if task.data is None:  # the library's calibration set, all of it up to ``count``
        return None if task.user_calibration is None else task.user_calibration[:count]
    return search_calibration(cfg, task.data, count)


def build_task(cfg: SearchConfig, device: torch.device) -> SearchTask:
    """Base model, structure, constraint, scorer and environment for this config (the CLI's door)."""
    base, base_path = obtain_base_model(cfg)
    base = base.to(device).eval()
    data = build_data(**{**asdict(cfg.data), "augment": False, "resize": trained_size(base)})
    val_x, val_y = stack_dataset(data.search_val, limit=cfg.search_val_images)
    screen = cfg.screen_images if cfg.screen_images and cfg.screen_images < len(val_y) else None
    images = ScoringImages(
        val_x[:screen] if screen else val_x,
        val_y[:screen] if screen else val_y,
        search_calibration(cfg, data, cfg.calibration_images) if cfg.reconstruct else None,
        search_calibration(cfg, data, cfg.adabn_images) if "adabn" in cfg.score else None,
        # an underdetermined consumer (the classifier) is fit on the export's images, at least 2 rows per column
        more_calibration=lambda count: search_calibration(cfg, data, max(count, cfg.export_calibration_images or 0)),
        distill=search_calibration(cfg, data, steps * cfg.kd_batch_size) if (steps := distill_steps(cfg)) else None,
    )
    example = torch.zeros(1, data.in_channels, data.image_size, data.image_size)
    task = assemble_task(cfg, base, example, images, device, data=data, base_path=base_path)
    task.rescore_images = (val_x, val_y) if screen else None
    return task


def distill_steps(cfg: SearchConfig) -> int:
    """The most distillation steps a candidate may get: the ``kd`` evaluators', or a multi-fidelity search's last
    rung (``agent.options.rungs``)."""
    rungs = (cfg.agent.options or {}).get("rungs") or [0]
    return max(cfg.kd_steps if "kd" in cfg.score else 0, *(int(r) for r in rungs))


def assemble_task(
    cfg: SearchConfig,
    base: nn.Module,
    example_input: torch.Tensor,
    images: ScoringImages,
    device: torch.device,
    *,
    data: DataSplits | None = None,
    base_path: str = "",
    evaluate: Callable[[nn.Module], float] | None = None,
    user_calibration: torch.Tensor | None = None,
) -> SearchTask:
    """The search task over ``base`` (on ``device``, eval mode): what the CLI and the library both search.

    :param example_input: one input batch; costs are counted per sample at its size.
    :param data: the dataset's splits, where there is one (the promotion fine-tunes on it, the export tests on it).
    :param evaluate: scores a candidate network instead of search-val top-1 (the library's user metric).
    :param user_calibration: all the calibration inputs a library caller gave (the export refits on them).
    """
    structure = analyse(base, (1, *example_input.shape[1:]), cfg.prune_residual)
    if structure.arch is None:  # a module built outside the model zoo: its class names it, its builder the caller
        structure.arch = {"name": f"{type(base).__module__}.{type(base).__qualname__}", "kwargs": {}}
    if not structure.points:
        raise ConfigError(f"{structure.arch_name} has no prunable channel group ({'; '.join(structure.fixed_groups)})")
    refuse_unpredictable_costs(base, structure)
    kind, budget = constraint_of(cfg)
    latency_fn = probe = timer = None
    if kind == "latency":
        from amc.strategy.latency import EndToEndProbe, LatencyTable
        from amc.timing import latency_timer

        example = torch.randn(structure.input_size, device=device)
        timer = latency_timer(base, example, torch.get_num_threads(), cfg.latency_runtime)
        grids = channel_grids(structure, cfg.channel_round, cfg.lower_bound)
        latency_fn = LatencyTable.cached(cfg.cache_dir, base, structure, grids, timer)
        probe = EndToEndProbe(base, latency_fn, timer)
    constraint = make_constraint(kind, budget, structure, latency_fn)
    wall = ActionWall(structure, constraint, cfg.lower_bound, cfg.channel_round)
    if kind == "latency":
        line, crowded = floor_note(constraint.cost(wall.minimum) / constraint.base_cost, budget, cfg.lower_bound)
        (log.warning if crowded else log.info)(line)
    settings = ScorerSettings(
        score=cfg.score,
        selection=cfg.selection,
        metric=cfg.metric,
        points_per_image=cfg.points_per_image,
        batch_size=cfg.eval_batch_size,
        seed=cfg.seed,
        # a user's metric runs the network itself; a multi-fidelity search switches evaluators, which a cache forbids
        prefix_cache_mb=0 if evaluate is not None or (cfg.agent.options or {}).get("rungs") else cfg.prefix_cache_mb,
        dtype=torch.float32 if evaluate is not None else eval_dtype(cfg.eval_precision, device),
        kd_steps=cfg.kd_steps,
        kd_batch_size=cfg.kd_batch_size,
        kd_lr=cfg.kd_lr,
    )
    scorer = StrategyScorer(base, structure, images, settings, device, evaluate=evaluate)
    env = ChannelPruningEnv(
        scorer, wall, reward=cfg.reward, fill_budget=cfg.fill_budget, latency_probe=probe, latency_slack=MEASURED_SLACK
    )
    return SearchTask(base, base_path, data, structure, constraint, scorer, env, timer, user_calibration)
