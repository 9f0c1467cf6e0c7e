"""``amc.compress`` and ``amc.prune``: the search and the pruning of a model held in Python.

Both go through the rooms the command line uses: the settings are ``amc.settings.SearchConfig``'s (the one place for
each default), the task is ``amc.strategy.task.assemble_task``, the search ``amc.strategy.loop.run_search``, the export
``amc.strategy.best.export_best``, the pruning ``amc.pruning``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from amc.api.budget import Budget, BudgetError
from amc.api.inputs import (
    InputError,
    check_example_input,
    check_model,
    classification_data,
    model_device,
    private_copy,
    stack_inputs,
)
from amc.errors import ConfigError
from amc.settings import AgentConfig, SearchConfig
from amc.strategy.runners import AGENTS

METHODS = AGENTS  # every search method the command line has (conf/agent/*.yaml)
FINISHED = ("strategy.json", "pruned.pt")  # what a finished search leaves (amc.strategy.loop.FINISHED_FILES)


@dataclass
class Compressed:
    """What :func:`compress` found: the smaller network and how it was chosen.

    :ivar model: the physically smaller, reconstructed network (same forward signature as the base).
    :ivar strategy: per decision point the channels kept (``channels``, ``kept_channels``) and the search's record;
        JSON-serialisable, and accepted by :func:`prune`.
    :ivar score: the exported strategy's score (your ``evaluate``, or search-val top-1 in percent with ``data``).
    :ivar macs, params: per sample, of ``model`` (MACs of convs and linear layers; FLOPs = 2 x MACs).
    :ivar base_macs, base_params: the same of the base.
    :ivar history: one row per evaluation (channels, score, MACs, params, timings).
    :ivar base_score: the base network's score by the same measure.
    :ivar run_dir: where the run's files are, or ``None``.
    """

    model: nn.Module
    strategy: dict[str, Any]
    score: float
    macs: int
    params: int
    base_macs: int
    base_params: int
    history: list[dict[str, Any]] = field(repr=False)
    base_score: float | None = None
    run_dir: Path | None = None

    def save(self, path: str | Path) -> Path:
        """Write :attr:`model` with its strategy as an amc checkpoint (data only; :func:`amc.load` reads it)."""
        from amc.api.persist import save

        return save(self.model, path, strategy=self.strategy)

    def __str__(self) -> str:
        return (
            f"Compressed: MACs {self.macs:,} of {self.base_macs:,} ({self.macs / self.base_macs:.3f}; FLOPs = 2 x "
            f"MACs), params {self.params:,} of {self.base_params:,}, score {self.score:.4g} "
            f"({len(self.history)} evaluations)"
        )


def compress(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    budget: Budget,
    evaluate: Callable[[nn.Module], float] | None = None,
    data: Any = None,
    calibration: Any = None,
    method: str = "ddpg",
    evaluations: int | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    **options: Any,
) -> Compressed:
    """Search how many channels each layer of ``model`` keeps so that it meets ``budget`` with the best score.

    :param model: any ``nn.Module`` torch.fx can trace (on CPU or CUDA: candidates are scored where it lives).
        It is left unchanged.
    :param example_input: one batch the model takes; costs are counted per sample at its size.
    :param budget: ``Budget(flops=0.5)``, ``Budget(params=0.5)`` or ``Budget(latency=0.6)``: exactly one.
    :param evaluate: your metric, ``evaluate(network) -> float``, higher is better, on your own data; it is called
        once on the base, then on every candidate (a private copy: it may change it).
    :param data: instead of ``evaluate``, a classification set to score top-1 on: ``(inputs, labels)`` tensors or a
        DataLoader of such batches.
    :param calibration: inputs (a tensor, or an iterable of batches) that the least-squares refit, the channel
        ranking and BN recalibration read; the inputs of ``data`` when omitted.
    :param method: ``ddpg`` (AMC's agent), ``td3``, ``sac``, ``sensitivity``, ``greedy``, ``optuna``,
        ``hyperband`` (multi-fidelity: the refit, then rungs of distillation on ``calibration``), ``random`` or
        ``uniform``.
    :param evaluations: candidates scored, probes included (default: ``SearchConfig.episodes``, or the method's).
    :param seed: seeds the search (and Python's, NumPy's and torch's global generators).
    :param run_dir: write the CLI's files there (``episodes.jsonl``, ``strategy.json``, ``pruned.pt``) and resume
        a search killed there; without it nothing is written to disk: the working files live in a temporary folder
        in memory (Linux's ``/dev/shm``; elsewhere the system's temporary folder), removed when the call returns.
    :param options: any other setting of ``amc.settings.SearchConfig`` (``lower_bound=0.2``, ``score="lsq+adabn"``,
        ``channel_round=8``, ``calibration_images=1000``), and the method's settings (``warmup_episodes=10``,
        ``noise_sigma=0.5``; ``options={"start": "uniform"}``, merged into those ``conf/agent/NAME.yaml`` gives),
        or them all as ``agent=AgentConfig(...)`` or a mapping.
    :returns: a :class:`Compressed`.
    :raises AmcError: for a bad budget, method, option, example input, calibration or ``evaluate``, before any
        search starts.
    """
    from amc.runtime.process import seed_everything
    from amc.strategy.loop import run_search
    from amc.strategy.task import assemble_task

    cfg = search_settings(budget, method, evaluations, seed, options)
    inputs = prepare_inputs(model, example_input, cfg, evaluate, data, calibration)
    device, example, images, calib = inputs.device, inputs.example, inputs.images, inputs.calibration
    seed_everything(cfg.seed)
    started = time.perf_counter()
    with _working_dir(run_dir, cfg) as (folder, cfg):
        base = private_copy(model).to(device).eval()  # the search reads the base; yours stays as it is
        task = assemble_task(cfg, base, example, images, device, evaluate=evaluate, user_calibration=calib)
        strategy, network, recorder = run_search(cfg, folder, task, device, started)
        if network is None:
            raise ConfigError(f"the search stopped before it finished: resume it with the same run_dir={folder}")
        history = [dict(row) for row in recorder.rows]
    network = network.to(device).eval()
    return Compressed(
        network,
        strategy,
        float(strategy["accuracy"]),
        int(strategy["macs"]),
        int(strategy["params"]),
        int(strategy["base_macs"]),
        int(strategy["base_params"]),
        history,
        inputs.base_score,
        Path(run_dir) if run_dir is not None else None,
    )


@dataclass
class PreparedInputs:
    """A library caller's inputs, checked and in the shapes the search reads."""

    device: torch.device
    example: torch.Tensor
    images: Any  # amc.strategy.scoring.ScoringImages
    calibration: torch.Tensor | None
    base_score: float | None


def prepare_inputs(
    model: Any, example_input: Any, cfg: SearchConfig, evaluate: Any, data: Any, calibration: Any
) -> PreparedInputs:
    """Check the model, example input, metric, dataset and calibration (one AmcError line each), and turn them into
    what the scorer reads; the user's metric is called once on the base, so one that fails, fails now."""
    from amc.strategy.scoring import ScoringImages, call_user_metric
    from amc.strategy.task import distill_steps

    model = check_model(model)
    if evaluate is None and data is None:
        raise InputError("give evaluate= (your metric) or data= (a classification set to score top-1 on)")
    if evaluate is not None and not callable(evaluate):
        raise InputError(f"evaluate must be callable, evaluate(network) -> float; got a {type(evaluate).__name__}")
    example = check_example_input(model, example_input)
    empty = torch.empty(0, *example.shape[1:])
    val_x, val_y = classification_data(data, example) if data is not None else (empty, torch.empty(0).long())
    given = stack_inputs(calibration, example, "calibration") if calibration is not None else None
    calib = given if given is not None else (val_x if len(val_x) else None)
    if calib is None and (cfg.reconstruct or "adabn" in cfg.score or "kd" in cfg.score):
        raise InputError(
            f"calibration= is needed: score={cfg.score} and the least-squares refit read inputs "
            "(or pass reconstruct=False, selection='l1', score='plain')"
        )
    base_score = call_user_metric(evaluate, private_copy(model).eval()) if evaluate is not None else None
    images = ScoringImages(
        val_x,
        val_y,
        calib[: cfg.calibration_images] if calib is not None and cfg.reconstruct else None,
        calib[: cfg.adabn_images] if calib is not None and "adabn" in cfg.score else None,
        more_calibration=(lambda count: calib) if calib is not None else None,
        distill=calib[: distill_steps(cfg) * cfg.kd_batch_size] if calib is not None and distill_steps(cfg) else None,
    )
    return PreparedInputs(model_device(model), example, images, calib, base_score)


def prune(
    model: nn.Module,
    example_input: torch.Tensor,
    strategy: Mapping[str, Any] | Sequence[int],
    *,
    calibration: Any = None,
    selection: str = "l1",
    points_per_image: int = 10,
    seed: int = 0,
) -> nn.Module:
    """``model`` pruned by hand to ``strategy``: a physically smaller copy (``model`` is left unchanged).

    :param model: any ``nn.Module`` torch.fx can trace.
    :param example_input: one batch the model takes (the network is traced at its size).
    :param strategy: channels per decision point (a list), or a :class:`Compressed`'s ``strategy`` (its kept channel
        indices are then kept exactly).
    :param calibration: inputs for the closed-loop least-squares refit of each pruned layer's consumers; without
        them the weights are only sliced.
    :param selection: how channels are ranked when ``strategy`` gives counts only: ``l1`` (AMC's), ``l2``,
        ``bn_gamma``, or ``lsq`` (needs ``calibration``).
    :param points_per_image: spatial positions per calibration input that the least squares sample.
    :param seed: seeds that sampling (and ``random`` selection).
    """
    from amc.pruning.apply import keep_indices, reconstruction_overrides
    from amc.pruning.slicing import slice_model
    from amc.pruning.structure import analyse

    model = check_model(model)
    example = check_example_input(model, example_input)
    base = private_copy(model).eval()
    structure = analyse(base, (1, *example.shape[1:]))
    if structure.arch is None:
        structure.arch = {"name": f"{type(model).__module__}.{type(model).__qualname__}", "kwargs": {}}
    calib = stack_inputs(calibration, example, "calibration").to(example.device) if calibration is not None else None
    channels, kept = _channels_of(strategy, structure)
    if kept is None:
        stats = None
        if selection == "lsq":
            from amc.pruning.reconstruction import OpenLoopReconstructor

            if calib is None:
                raise InputError("selection='lsq' ranks channels by their least-squares refit: give calibration=")
            stats = OpenLoopReconstructor(base, structure, calib, points_per_image, seed).stats
        try:
            kept = keep_indices(base, structure, channels, selection, seed, stats)
        except (ValueError, ConfigError) as exc:
            raise InputError(f"strategy: {exc}") from None
    overrides = None
    if calib is not None:
        overrides = reconstruction_overrides(base, structure, kept, "closed", calib, points_per_image, seed)
    return slice_model(base, structure, kept, overrides).eval()


def _channels_of(strategy: Any, structure: Any) -> tuple[list[int], list[torch.Tensor] | None]:
    """(channels per decision point, kept indices when the strategy names them)."""
    widths = structure.widths
    if isinstance(strategy, Mapping):
        names = strategy.get("decision_points")
        if names is not None and list(names) != [p.name for p in structure.points]:
            raise InputError("strategy was found for another network: its decision points differ from this model's")
        kept_lists = strategy.get("kept_channels")
        if kept_lists is not None:
            if len(kept_lists) != len(widths):
                raise InputError(f"strategy keeps channels at {len(kept_lists)} points; this model has {len(widths)}")
            kept = [torch.tensor(sorted(k), dtype=torch.long) for k in kept_lists]
            return [len(k) for k in kept], kept
        strategy = strategy.get("channels")
    if not isinstance(strategy, Sequence) or not all(isinstance(c, int) for c in strategy):
        raise InputError("strategy must be a list of channel counts or a Compressed.strategy mapping")
    if len(strategy) != len(widths) or not all(1 <= c <= w for c, w in zip(strategy, widths, strict=False)):
        raise InputError(f"strategy must give 1..width channels at each of the {len(widths)} points, widths {widths}")
    return list(strategy), None


def search_settings(
    budget: Budget, method: str, evaluations: int | None, seed: int, options: Mapping[str, Any]
) -> SearchConfig:
    """The search's settings: ``SearchConfig``'s defaults (the CLI's), the method's, then the caller's."""
    from amc.config import compose_settings

    if not isinstance(budget, Budget):
        raise BudgetError(f"budget must be an amc.Budget, e.g. Budget(flops=0.5), got {type(budget).__name__}")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    options = dict(options)
    agent_options = options.pop("agent", None) or {}
    if isinstance(agent_options, AgentConfig):
        agent_options = {f.name: getattr(agent_options, f.name) for f in fields(AgentConfig) if f.name != "name"}
    agent_fields = {f.name for f in fields(AgentConfig)}
    updates: dict[str, Any] = {**budget.setting(), "seed": seed}
    if evaluations is not None:
        updates["episodes"] = evaluations
    for key, value in {**options, **agent_options}.items():
        target = f"agent.{key}" if key in agent_fields or key in agent_options else key
        if key in LIBRARY_OWNS:
            raise ConfigError(f"option {key!r} is the command line's; {LIBRARY_OWNS[key]}")
        updates[target] = value
    # a Python caller's run: no tracking, no checkpoint or shipped base to load, no fine-tuning on a dataset
    overrides = [f"agent={method}", "logger=none", "pretrained=false", "promote.top_k=0", "checkpoint=null"]
    settings = compose_settings("search", overrides, updates)
    from amc.strategy.checks import check_method

    if settings.workers > 1:
        raise ConfigError("workers > 1 needs a checkpoint each worker can load: use the command line (amc.search)")
    check_method(settings)
    return settings


# command-line settings that a Python caller gives otherwise
LIBRARY_OWNS = {
    "checkpoint": "pass the model itself",
    "model": "pass the model itself",
    "data": "pass data= or evaluate=",
    "resume": "pass the same run_dir= again",
    "flops_budget": "pass budget=Budget(flops=...)",
    "params_budget": "pass budget=Budget(params=...)",
    "latency_budget": "pass budget=Budget(latency=...)",
    "episodes": "pass evaluations=",
}


MEMORY_FOLDERS = ("/dev/shm",)  # tmpfs on Linux: files there live in memory
MEMORY_NEEDED = 2**30  # free bytes asked of it: a search's working files (episodes, state, pruned weights) with margin


def memory_folder() -> str | None:
    """A folder whose files live in memory (Linux's ``/dev/shm``) with room for a search's working files, or
    ``None`` (the system's temporary folder) where there is none."""
    for folder in MEMORY_FOLDERS:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        if os.access(folder, os.W_OK) and free >= MEMORY_NEEDED:
            return folder
    return None


@contextlib.contextmanager
def _working_dir(run_dir: str | Path | None, cfg: SearchConfig) -> Iterator[tuple[Path, SearchConfig]]:
    """The folder the search works in, and its settings: ``run_dir`` (resumed when it holds a killed search of the
    same settings), or a temporary folder removed afterwards, in memory where the OS has one (:func:`memory_folder`)."""
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="amc-", dir=memory_folder()) as folder:
            yield Path(folder), cfg
        return
    from amc.config import load_settings, save_settings

    folder = Path(run_dir)
    if all((folder / name).exists() for name in FINISHED):
        raise ConfigError(
            f"run_dir={folder} holds a finished search (strategy.json, pruned.pt), which would be written over: "
            f"load it with amc.load('{folder / 'pruned.pt'}'), or choose another run_dir"
        )
    saved = folder / "config.yaml"
    if saved.is_file():
        before = load_settings(saved, SearchConfig)
        changed = [
            name
            for name in ("flops_budget", "params_budget", "latency_budget", "agent", "seed", "episodes", "score")
            if getattr(before, name) != getattr(cfg, name)
        ]
        if changed:
            raise ConfigError(
                f"run_dir={folder} holds a search with other settings ({', '.join(changed)}): choose another run_dir"
            )
        cfg = dataclasses.replace(cfg, resume=str(folder))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        save_settings(cfg, folder)
    yield folder, cfg
