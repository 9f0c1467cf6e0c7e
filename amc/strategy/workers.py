"""Parallel strategy scoring: ``workers=N`` runs N copies of the environment in their own processes
(stable-baselines3's ``SubprocVecEnv``), each with its own scorer, calibration statistics and device.

Each worker rebuilds the task from the settings, reading the base network the main process already
trained or loaded (so a base is trained once). On CPU, the threads are split among the workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from stable_baselines3.common.vec_env import SubprocVecEnv

from amc.envs import ChannelPruningEnv
from amc.runtime.process import seed_everything, set_threads
from amc.settings import SearchConfig


def worker_device(cfg: SearchConfig, index: int) -> str:
    return cfg.devices[index % len(cfg.devices)] if cfg.devices else cfg.device


def worker_threads(cfg: SearchConfig) -> int:
    total = cfg.threads or torch.get_num_threads()
    return max(1, total // cfg.workers)


def _env_factory(cfg: SearchConfig, index: int) -> Callable[[], ChannelPruningEnv]:
    def make() -> ChannelPruningEnv:
        from amc.strategy.task import build_task
        from amc.training.distributed import pick_device

        set_threads(cfg.threads)
        seed_everything(cfg.seed)
        return build_task(cfg, pick_device(worker_device(cfg, index))).env

    return make


def parallel_envs(cfg: SearchConfig, base_path: str) -> SubprocVecEnv:
    """``cfg.workers`` environments in subprocesses, all scoring against the base at ``base_path``."""
    worker_cfg = replace(cfg, checkpoint=base_path, threads=worker_threads(cfg), workers=1)
    return SubprocVecEnv([_env_factory(worker_cfg, i) for i in range(cfg.workers)], start_method="spawn")
