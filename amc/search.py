"""``python -m amc.search flops_budget=0.5``: AMC's reinforcement-learning channel search.

Writes into its run dir: ``config.yaml``, ``episodes.jsonl`` / ``episodes.csv`` (every episode),
``strategy.json`` (the best strategy; the format ``amc.export strategy=`` takes), ``pruned.pt``
(the best strategy, physically pruned and reconstructed), and plots. ``resume=RUN_DIR`` continues
a killed search from its last finished episode.
"""

from __future__ import annotations

import json
import random
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.callbacks import BaseCallback

from amc.config import (
    build_model,
    builder_name,
    check_at_least,
    fit_input_size,
    run_dir_of,
    save_resolved_config,
    seed_everything,
    set_threads,
    to_plain,
)
from amc.data import build_data, calibration_images, dataset_info, stack_dataset
from amc.errors import ConfigError, user_errors_exit
from amc.io import refuse_finished_run, save_torch_atomic, write_json_atomic
from amc.pruning.reconstruction import unreconstructed
from amc.pruning.structure import analyse
from amc.strategy.agents import build_ddpg, ddpg_state, load_ddpg_state
from amc.strategy.budget import ActionWall, make_constraint
from amc.strategy.recorder import SearchRecorder
from amc.strategy.scoring import StrategyScorer
from amc.tracking import Tracker
from amc.training.base_model import obtain_base_model
from amc.training.distributed import pick_device
from amc.training.evaluation import evaluate, tensor_batches
from envs import ChannelPruningEnv
from models import save_checkpoint

STATE_TENSORS, STATE_JSON = "search_state.pt", "search_state.json"


def constraint_of(cfg: DictConfig) -> tuple[str, float]:
    """The one budget this run searches under; checked before anything expensive runs."""
    chosen = {k: cfg.get(f"{k}_budget") for k in ("params", "latency") if cfg.get(f"{k}_budget") is not None}
    if len(chosen) > 1:
        raise ConfigError("give one of params_budget or latency_budget (flops_budget is the default)")
    kind, budget = next(iter(chosen.items())) if chosen else ("flops", cfg.get("flops_budget"))
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"{kind}_budget must be a number in (0, 1], got {budget!r}") from None
    if not 0 < budget <= 1:
        raise ConfigError(f"{kind}_budget must be in (0, 1] (the fraction of the base network's cost), got {budget:g}")
    return kind, budget


def check_inputs(cfg: DictConfig) -> None:
    constraint_of(cfg)
    if not cfg.checkpoint:
        builder_name(cfg.model)  # an unknown model fails before a base model is trained for it
    if cfg.agent.name not in ("ddpg", "random", "uniform"):
        raise ConfigError(f"unknown agent {cfg.agent.name!r}; use ddpg, random or uniform")
    if cfg.checkpoint and not Path(str(cfg.checkpoint)).is_file():
        raise ConfigError(f"checkpoint not found: {cfg.checkpoint}")
    if cfg.export_reconstruction not in ("open", "closed"):
        raise ConfigError("export_reconstruction must be open or closed")
    check_at_least(
        cfg,
        {
            "episodes": 1,
            "calibration_images": 1,
            "export_calibration_images": 1,
            "points_per_image": 1,
            "channel_round": 1,
            "eval_batch_size": 1,
            "search_val_images": 1,
            "test_images": 1,
            "prefix_cache_mb": 0,
            "threads": 1,
            "stop_after": 1,
            "base_training.epochs": 1,
            "base_training.batch_size": 1,
            "base_training.lr": 0,
        },
        optional=("export_calibration_images", "search_val_images", "test_images", "threads", "stop_after"),
    )
    if not 0 < cfg.lower_bound <= 1:
        raise ConfigError(f"lower_bound must be in (0, 1] (the smallest keep ratio), got {cfg.lower_bound}")
    if not cfg.checkpoint and not cfg.get("resume"):
        check_budget_before_training(cfg)


def check_budget_before_training(cfg: DictConfig) -> None:
    """A MACs/params budget depends on the architecture only: check it on an untrained model, before
    a base model is trained for minutes only to be refused."""
    kind, budget = constraint_of(cfg)
    if kind == "latency":
        return
    info = dataset_info(cfg.data.name, cfg.data.get("crop"))
    model = build_model(cfg.model, info["num_classes"], info["in_channels"], info["image_size"]).eval()
    size = fit_input_size(model, info["in_channels"], info["image_size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # analyse warns again, once, when the search starts
        structure = analyse(model, (1, info["in_channels"], size, size), cfg.prune_residual)
    if not structure.points:
        raise ConfigError(f"{structure.arch_name} has no prunable channel group")
    ActionWall(structure, make_constraint(kind, budget, structure), cfg.lower_bound, cfg.channel_round)


def trained_size(model) -> int | None:
    """The image size a checkpoint was trained at (the data is resized to it when it differs)."""
    size = getattr(model, "checkpoint_metadata", {}).get("image_size")
    return int(size) if size else None


def search_calibration(cfg: DictConfig, data, count: int) -> torch.Tensor:
    data_kwargs = {**to_plain(cfg.data), "resize": data.image_size}
    return calibration_images(data_kwargs, count, cfg.calibration_augment, cfg.seed, splits=data)


def export_calibration(cfg: DictConfig, data, scorer: StrategyScorer) -> torch.Tensor | None:
    """Calibration images for the final export: more than the search's own, where asked for."""
    count = cfg.get("export_calibration_images")
    if not cfg.reconstruct or count is None or count <= cfg.calibration_images:
        return scorer.calibration_images
    return search_calibration(cfg, data, count)


def build_task(cfg: DictConfig, device: torch.device):
    """Base model, structure, constraint, scorer and environment for this config."""
    base, base_path = obtain_base_model(cfg)
    base = base.to(device).eval()
    data = build_data(**{**to_plain(cfg.data), "augment": False, "resize": trained_size(base)})
    structure = analyse(base, (1, data.in_channels, data.image_size, data.image_size), cfg.prune_residual)
    if not structure.points:
        raise ConfigError(f"{structure.arch_name} has no prunable channel group ({'; '.join(structure.fixed_groups)})")
    val_x, val_y = stack_dataset(data.search_val, limit=cfg.search_val_images)
    calib_x = search_calibration(cfg, data, cfg.calibration_images) if cfg.reconstruct else None
    kind, budget = constraint_of(cfg)
    latency_fn = None
    if kind == "latency":
        from amc.strategy.latency import LatencyTable

        latency_fn = LatencyTable.cached(cfg.cache_dir, base, structure, device, cfg.channel_round, cfg.lower_bound)
    constraint = make_constraint(kind, budget, structure, latency_fn)
    wall = ActionWall(structure, constraint, cfg.lower_bound, cfg.channel_round)
    scorer = StrategyScorer(
        base,
        structure,
        val_x,
        val_y,
        calib_x,
        cfg.points_per_image,
        cfg.selection,
        cfg.metric,
        cfg.eval_batch_size,
        cfg.seed,
        device,
        prefix_cache_mb=cfg.get("prefix_cache_mb", 0),
    )
    env = ChannelPruningEnv(scorer, wall, reward=cfg.reward, fill_budget=cfg.fill_budget)
    return base, base_path, data, structure, constraint, scorer, env


class RecordEpisodes(BaseCallback):
    """Records each finished episode and checkpoints the agent between episodes (for resume)."""

    def __init__(self, recorder: SearchRecorder, save_state, stop_after: int | None) -> None:
        super().__init__()
        self.recorder, self.save_state, self.stop_after = recorder, save_state, stop_after
        self.finished_here = 0

    def _on_rollout_start(self) -> None:
        self.save_state(self.model)

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "channels" in info:
                self.recorder.record(info)
                self.model.action_noise.set_episode(self.recorder.episodes)
                self.finished_here += 1
        return self.stop_after is None or self.finished_here < self.stop_after


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def run_ddpg(cfg: DictConfig, env: ChannelPruningEnv, recorder: SearchRecorder, run_dir: Path) -> None:
    agent_cfg = to_plain(cfg.agent)
    agent = build_ddpg(env, env.steps, agent_cfg, cfg.seed)
    state_json = run_dir / STATE_JSON
    if cfg.get("resume") and state_json.is_file():
        scalars = json.loads(state_json.read_text())
        tensors = torch.load(run_dir / scalars.get("tensors", STATE_TENSORS), weights_only=True)
        load_ddpg_state(agent, tensors, scalars["agent"])
        set_rng_state(scalars["rng"])
        recorder.truncate(scalars["episodes"])
        print(f"resuming the search at episode {scalars['episodes'] + 1} of {cfg.episodes}")

    def save_state(model) -> None:
        if recorder.episodes == 0:
            return
        tensors, scalars = ddpg_state(model)
        # Tensors first, under a name of their own, then the JSON that points at them: a kill between the
        # two writes leaves the previous, consistent pair.
        name = f"search_state_{recorder.episodes:05d}.pt"
        save_torch_atomic(tensors, run_dir / name)
        state = {"episodes": recorder.episodes, "agent": scalars, "rng": rng_state(), "tensors": name}
        write_json_atomic(state_json, state)
        for old in run_dir.glob("search_state_*.pt"):
            if old.name != name:
                old.unlink()

    remaining = (cfg.episodes - recorder.episodes) * env.steps
    if remaining > 0:
        callback = RecordEpisodes(recorder, save_state, cfg.get("stop_after"))
        # State is saved at each episode boundary, after the agent's update; a stop (or a kill) loses at
        # most the episode in flight, which a resume replays exactly.
        agent.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=False, progress_bar=False)


def run_random(cfg: DictConfig, env: ChannelPruningEnv, recorder: SearchRecorder, run_dir: Path) -> None:
    """Random search: uniform keep ratios, through the same environment and scoring."""
    rng = np.random.default_rng(cfg.seed)
    state_json = run_dir / STATE_JSON
    if cfg.get("resume") and state_json.is_file():
        saved = json.loads(state_json.read_text())
        rng.bit_generator.state = saved["rng"]
        recorder.truncate(saved["episodes"])
    done_here = 0
    while recorder.episodes < cfg.episodes and (cfg.get("stop_after") is None or done_here < cfg.stop_after):
        env.reset()
        info: dict[str, Any] = {}
        for _ in range(env.steps):
            _, _, _, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        recorder.record(info)
        done_here += 1
        write_json_atomic(state_json, {"episodes": recorder.episodes, "rng": rng.bit_generator.state})


def run_uniform(cfg: DictConfig, env: ChannelPruningEnv, recorder: SearchRecorder, run_dir: Path) -> None:
    """The uniform baseline: the largest single keep ratio whose rounded channels meet the budget."""
    channels = env.wall.uniform()
    info = env.evaluate(channels)
    info["agent_channels"] = channels
    recorder.record(info)


def measured_latency(base, pruned, example: torch.Tensor, best: dict[str, Any]) -> dict[str, Any]:
    """The exported network's end-to-end latency against the base (PyTorch eager, batch 1), beside the
    per-layer table's prediction the search was held to."""
    from amc.deployment import torch_latency

    device = next(base.parameters()).device
    threads = torch.get_num_threads()
    x = example.to(device)
    ratio = torch_latency(pruned.to(device), x, threads).median_ms / torch_latency(base, x, threads).median_ms
    print(
        f"latency: the table predicts {best['cost_ratio']:.3f} of the base; measured end to end "
        f"{ratio:.3f} (PyTorch eager, batch 1, {threads} threads, median)"
    )
    return {"predicted_latency_ratio": best["cost_ratio"], "measured_latency_ratio": ratio}


def finish(
    cfg: DictConfig,
    run_dir: Path,
    recorder: SearchRecorder,
    scorer: StrategyScorer,
    data,
    base_path: str,
    device: torch.device,
    tracker: Tracker,
) -> dict[str, Any]:
    """Export the best strategy: test top-1, strategy.json, pruned.pt, plots."""
    best = recorder.best
    if cfg.export_reconstruction == "closed":
        calibration = export_calibration(cfg, data, scorer)
        pruned = scorer.build_closed_loop(best["channels"], calibration)
    else:
        calibration = scorer.calibration_images
        pruned, _ = scorer.build(best["channels"])
    test_x, test_y = stack_dataset(data.test, limit=cfg.get("test_images"))
    test = evaluate(pruned.to(device), tensor_batches(test_x, test_y, cfg.eval_batch_size), device)
    base_test = evaluate(scorer.model, tensor_batches(test_x, test_y, cfg.eval_batch_size), device)
    strategy = recorder.strategy(
        best,
        base_checkpoint=base_path,
        test_top1=test["top1"],
        test_top5=test["top5"],
        base_test_top1=base_test["top1"],
        export_reconstruction=cfg.export_reconstruction,
        export_calibration_images=0 if calibration is None else len(calibration),
        not_reconstructed=unreconstructed(scorer.model, scorer.structure) if cfg.reconstruct else {},
        **(measured_latency(scorer.model, pruned, test_x[:1], best) if cfg.get("latency_budget") else {}),
    )
    write_json_atomic(run_dir / "strategy.json", strategy)
    save_checkpoint(
        pruned.cpu(), run_dir / "pruned.pt", strategy=strategy, image_size=data.image_size, base_checkpoint=base_path
    )
    recorder.finish(cfg.agent.get("warmup_episodes", 0))
    tracker.summary({"best_" + k: v for k, v in strategy.items() if isinstance(v, int | float)})
    print(recorder.summary_line(strategy))
    print(f"wrote {run_dir / 'strategy.json'} and {run_dir / 'pruned.pt'}")
    return strategy


def search(cfg: DictConfig) -> dict[str, Any]:
    check_inputs(cfg)
    run_dir = run_dir_of(cfg)
    if cfg.get("resume"):
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{run_dir} has no config.yaml: not a search run dir")
        stop_after = cfg.get("stop_after")
        cfg = OmegaConf.load(saved)
        cfg.resume, cfg.stop_after = str(run_dir), stop_after
        for stale in run_dir.glob("*.tmp"):  # a write the kill interrupted; its target is intact
            stale.unlink()
    else:
        refuse_finished_run(run_dir, ("episodes.jsonl", "strategy.json", "pruned.pt", STATE_JSON), "search")
        save_resolved_config(cfg, run_dir)
    set_threads(cfg.get("threads"))
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    started = time.perf_counter()
    _base, base_path, data, structure, constraint, scorer, env = build_task(cfg, device)
    setup_s = time.perf_counter() - started
    tracker = Tracker(cfg.logger.kind, run_dir, to_plain(cfg), cfg.logger.project, mode=cfg.logger.mode)
    recorder = SearchRecorder(run_dir, structure, constraint, cfg, tracker, setup_s)
    if cfg.get("resume") and not (run_dir / STATE_JSON).is_file():
        recorder.truncate(0)  # killed before its first saved agent state: nothing to continue from
    print(
        f"searching {cfg.agent.name} over {len(structure.points)} decision points of {structure.arch_name}: "
        f"{constraint.kind} budget {constraint.budget:g} of {constraint.base_cost:,.0f} {constraint.unit}, "
        f"scored by search-val {cfg.metric} on {len(scorer.val_labels)} images"
    )
    runner = {"ddpg": run_ddpg, "random": run_random, "uniform": run_uniform}[cfg.agent.name]
    runner(cfg, env, recorder, run_dir)
    recorder.close()
    if recorder.episodes < cfg.episodes and cfg.agent.name != "uniform":
        print(
            f"stopped with {recorder.episodes} of {cfg.episodes} episodes recorded; continue with resume={run_dir} "
            "(it replays from the last episode whose agent update was saved)"
        )
        tracker.finish()
        return recorder.best or {}
    strategy = finish(cfg, run_dir, recorder, scorer, data, base_path, device, tracker)
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wall time {time.perf_counter() - started:.0f} s (setup {setup_s:.0f} s); peak RSS {usage:.2f} GiB")
    tracker.finish()
    return strategy


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    search(cfg)


if __name__ == "__main__":
    main()
