"""The base network a search or a fine-tune starts from: a given checkpoint, or one trained once and cached."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import torch.nn as nn
from filelock import FileLock

from amc.errors import AmcError
from amc.io import write_json_atomic
from amc.logs import log_files, log_like_parent
from amc.models import load_checkpoint
from amc.models.pretrained import ShippedBase, shipped_base
from amc.networks import builder_name, load_model_for_data, model_and_data, user_checkpoint_options
from amc.runtime.memory import release_freed_memory
from amc.runtime.onednn_cache import unbound_primitive_cache
from amc.runtime.process import seed_everything, set_threads, stop_with_parent
from amc.settings import SearchConfig
from amc.tracking import Tracker
from amc.training.distributed import Dist, pick_device
from amc.training.loop import fit

log = logging.getLogger(__name__)


def cached_base_path(cfg: SearchConfig) -> Path:
    train = cfg.base_training
    recipe = json.dumps([asdict(cfg.model), asdict(cfg.data), asdict(train), cfg.seed], sort_keys=True)
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:8]  # a model's kwargs or a data option change the base
    model = builder_name(cfg.model).rsplit(".", 1)[-1]
    name = f"{cfg.data.name}_{model}_e{train.epochs}_s{cfg.seed}_{digest}.pt"
    return Path(cfg.cache_dir).expanduser() / "base_models" / name


def shipped_base_for(cfg: SearchConfig) -> ShippedBase | None:
    """The pretrained base amc ships for this run's model and data (``pretrained=true``, no ``checkpoint=``)."""
    if not cfg.pretrained or cfg.checkpoint or cfg.model._target_ or cfg.data.crop is not None:
        return None
    return shipped_base(cfg.model.name, cfg.data.name, cfg.model.kwargs)


def obtain_base_model(cfg: SearchConfig) -> tuple[nn.Module, str]:
    """Load ``cfg.checkpoint``, else the pretrained base amc ships for the model and data, else train a base
    model on ``cfg.data`` once and cache it."""
    if cfg.checkpoint:
        return load_model_for_data(cfg.checkpoint, cfg.model, cfg.data), str(cfg.checkpoint)
    shipped = shipped_base_for(cfg)
    if shipped is not None:
        log.info(
            f"no checkpoint= given: searching amc's pretrained {shipped.model} for {shipped.data} "
            f"({shipped.test_top1:.2f} % test top-1, {shipped.path}); pretrained=false trains a base instead"
        )
        return load_model_for_data(str(shipped.path), cfg.model, cfg.data), str(shipped.path)
    path = cached_base_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Searches that share a base (a multirun over budgets or seeds, parallel launchers) train it once:
    # the first takes the lock and trains, the others wait and then load it.
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            log.info(f"using the cached base model {path}")
            return load_checkpoint(path, **user_checkpoint_options(cfg.model)), str(path)
        _train_base_in_child(cfg, path)
        return load_checkpoint(path, **user_checkpoint_options(cfg.model)), str(path)


def _train_base_in_child(cfg: SearchConfig, path: Path) -> None:
    """Train in a child process, so that everything training held (optimizer state, saved activations, a heap
    that training fragmented) goes back to the OS before the search starts (its peak memory: lab notebook)."""
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "forkserver", "spawn"):
        # inside a launcher's worker (joblib's loky): a child could not restore that start method; train here
        _train_base(cfg, path)
        return
    release_freed_memory()  # what the up-front checks allocated: the two processes overlap while the child trains
    child = multiprocessing.get_context("spawn").Process(
        target=_base_training_job, args=(cfg, path, log_files()), name="base"
    )
    child.start()
    child.join()
    if child.exitcode != 0 or not path.is_file():
        raise AmcError(f"training the base model stopped (exit code {child.exitcode}); its output is above")


def _base_training_job(cfg: SearchConfig, path: Path, logs: list[str]) -> None:
    log_like_parent(logs)
    unbound_primitive_cache()
    stop_with_parent()
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    try:
        _train_base(cfg, path)
    except AmcError as error:  # a user's input: one line, as in the parent
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _train_base(cfg: SearchConfig, path: Path) -> None:
    log.info(
        f"no checkpoint= given: training a base {builder_name(cfg.model)} on {cfg.data.name} for "
        f"{cfg.base_training.epochs} epoch(s) once; it is cached at {path} for the next run"
    )
    model, data = model_and_data(cfg.model, cfg.data)
    work = path.with_suffix(".run")
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(work / "config.json", asdict(cfg))
    meta = {
        "data": cfg.data.name,
        "image_size": data.image_size,
        "seed": cfg.seed,
        "job": "base training for amc.search",
    }
    fit(
        model,
        data,
        cfg.base_training,
        work,
        Dist(device=pick_device(cfg.device)),
        Tracker("none", work, {}),
        metadata=meta,
        resume=True,
        description="base",
    )
    tmp = path.with_name(path.name + ".tmp")
    shutil.copyfile(work / "best.pt", tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
