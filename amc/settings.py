"""Typed settings of every entry point: the schema Hydra validates each config against.

The YAML files in ``conf/`` are the one source of values; these dataclasses give each key its type, so
that a typo or a wrongly typed override fails when Hydra composes (``amc.config`` registers them). Fields
without a default must be set by the YAML; a ``None`` default marks a key only some group options carry.
Library code receives these objects (``amc.config.settings_of``), never the raw composed config.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional, get_args, get_type_hints

from amc.choices import (
    Algorithm,
    Choice,
    Distill,
    EvalPrecision,
    Evaluator,
    LatencyRuntime,
    Metric,
    MixedPrecision,
    OnExisting,
    Optimizer,
    Reconstruction,
    Reward,
    Sampler,
    Selection,
    Tracking,
)

# OmegaConf reads these annotations at runtime: they stay ``Optional[...]``, not ``X | None`` strings.
# ruff: noqa: UP045


CODE_KEYS = ("_target_", "runner", "source")  # settings whose value names code to import, call or execute


@dataclass
class ModelConfig:
    """A network: a registry ``name`` or any importable builder ``_target_``, with its ``kwargs``; ``source`` is
    a ``.py`` file holding ``_target_`` when its module is not importable (only ever taken from this run)."""

    name: str
    supports_small_input: bool
    kwargs: dict[str, Any]
    _target_: Optional[str] = None
    source: Optional[str] = None


@dataclass
class DataConfig:
    """A dataset and how it is split (``amc.data.build_data`` takes these as keywords)."""

    name: str
    root: Optional[str]
    download: bool
    search_val_size: int
    split_seed: int
    augment: bool
    train_limit: Optional[int]
    search_val_limit: Optional[int]
    test_limit: Optional[int]
    crop: Optional[int] = None


@dataclass
class AgentConfig:
    """A search method (``conf/agent/NAME.yaml``): ``runner`` names its class; the other keys are its settings."""

    name: str
    warmup_episodes: int
    runner: Optional[str] = None  # e.g. amc.strategy.methods.sensitivity.Sensitivity
    algorithm: Optional[Algorithm] = None  # RL agents (default: name)
    sampler: Optional[Sampler] = None  # optuna
    grid: Optional[list[float]] = None  # sensitivity: keep ratios each layer is probed at
    candidates: Optional[int] = None  # sensitivity: strategies scored from the best thresholds
    probes_from: Optional[str] = None  # sensitivity: an earlier run's dir whose probes are reused (another budget)
    rounds: Optional[int] = None  # greedy: shrinking rounds (default: as many as the evaluations allow)
    options: dict[str, Any] = field(default_factory=dict)  # a plug-in method's own settings
    hidden_sizes: Optional[list[int]] = None
    actor_lr: Optional[float] = None
    critic_lr: Optional[float] = None
    tau: Optional[float] = None
    discount: Optional[float] = None
    batch_size: Optional[int] = None
    replay_episodes: Optional[int] = None
    noise_sigma: Optional[float] = None
    noise_decay: Optional[float] = None
    baseline_alpha: Optional[float] = None


@dataclass
class LoggerConfig:
    """Run tracking: ``kind`` none or wandb; ``mode`` null picks offline unless a key is configured."""

    kind: Tracking
    project: str
    mode: Optional[str]


@dataclass
class DistillConfig:
    """The fine-tuning loss: ``ce``, ``kd`` (Hinton) or ``hint`` (KD plus FitNets feature hints)."""

    kind: Distill
    temperature: float
    alpha: float
    hint_weight: Optional[float] = None
    hint_layers: Optional[list[Any]] = None


@dataclass
class TrainConfig:
    """One schedule of the training loop (``amc.training.loop``)."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    optimizer: Optimizer
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    warmup_epochs: float
    label_smoothing: float
    num_workers: int
    max_steps_per_epoch: Optional[int]
    channels_last: bool  # ~1.35x faster depthwise convs on CPU
    grad_clip_norm: Optional[float]  # clips the global gradient norm
    mixed_precision: Optional[MixedPrecision] = None  # bfloat16 (CPU, CUDA) | float16 (CUDA): autocast's dtype


@dataclass
class PromoteConfig:
    """Fidelity promotion (``amc.strategy.promotion``): ``top_k`` strategies fine-tuned ``epochs`` with KD."""

    top_k: int
    epochs: float
    temperature: float
    alpha: float
    train: TrainConfig  # the schedule; its length is ``epochs``


@dataclass
class SearchConfig:
    """``amc.search``: see ``conf/search.yaml`` for what each key does."""

    model: ModelConfig
    data: DataConfig
    agent: AgentConfig
    logger: LoggerConfig
    flops_budget: Optional[float]
    params_budget: Optional[float]
    latency_budget: Optional[float]
    checkpoint: Optional[str]
    cache_dir: str
    episodes: int
    lower_bound: float
    prune_residual: bool
    channel_round: int
    fill_budget: bool
    reward: Reward
    metric: Metric
    selection: Selection
    reconstruct: bool
    calibration_images: int
    export_reconstruction: Reconstruction
    export_calibration_images: Optional[int]
    calibration_augment: bool
    points_per_image: int
    search_val_images: Optional[int]
    test_images: Optional[int]
    eval_batch_size: int
    prefix_cache_mb: float
    seed: int
    device: str
    threads: Optional[int]
    resume: Optional[str]
    stop_after: Optional[int]
    workers: int
    devices: Optional[list[str]]
    base_training: TrainConfig
    # conf/search.yaml sets auto; the default is what a run saved before this option existed was scored in, so that
    # resuming it goes on as it began
    eval_precision: EvalPrecision = EvalPrecision["float32"]
    export_candidates: int = 1  # the best N strategies rebuilt as exported, the best of them kept (1: as before)
    score: Evaluator = Evaluator["lsq"]  # lsq for runs saved before it
    adabn_images: int = 1000  # training images the BN statistics are recomputed on (score=adabn, lsq+adabn)
    latency_runtime: LatencyRuntime = LatencyRuntime["pytorch"]  # latency_budget timed in PyTorch eager or onnxruntime
    screen_images: Optional[int] = None  # episodes scored on this many search-val images (None: all of them) ...
    rescore_finalists: int = 10  # ... and the best this many, distinct, scored again on all before the export
    kd_steps: int = 50  # score=lsq+kd...: distillation steps from the base per candidate
    kd_batch_size: int = 64
    kd_lr: float = 0.01  # SGD, momentum 0.9, constant
    promote: Optional[PromoteConfig] = None  # conf/search.yaml sets it; runs saved before it have none
    pretrained: bool = False  # no checkpoint=: search the base amc ships for model and data (conf: true)
    on_existing: OnExisting = OnExisting["refuse"]  # continue: resume it (a finished one is kept)


@dataclass
class TrainRunConfig:
    """``amc.train``: a network trained from scratch, optionally distilled from ``teacher``."""

    model: ModelConfig
    data: DataConfig
    logger: LoggerConfig
    seed: int
    teacher: Optional[str]
    teacher_model: ModelConfig
    distill: DistillConfig
    device: str
    threads: Optional[int]
    resume: Optional[str]
    init_checkpoint: Optional[str]
    train: TrainConfig


@dataclass
class FinetuneConfig:
    """``amc.finetune``: a pruned network recovered by distillation from its base."""

    model: ModelConfig
    data: DataConfig
    distill: DistillConfig
    logger: LoggerConfig
    checkpoint: Optional[str]
    teacher: Optional[str]
    seed: int
    device: str
    threads: Optional[int]
    resume: Optional[str]
    cache_teacher_logits: Any  # auto | true | false
    train: TrainConfig


@dataclass
class ExportConfig:
    """``amc.export``: a channel list or a strategy.json applied to a base checkpoint."""

    model: ModelConfig
    data: DataConfig
    checkpoint: Optional[str]
    channels: Optional[list[int]]
    strategy: Optional[str]
    selection: Optional[Selection]
    prune_residual: Optional[bool]
    reconstruct: bool
    reconstruction: Reconstruction
    calibration_images: int
    calibration_augment: bool
    points_per_image: int
    evaluate: bool
    output: Optional[str]
    overwrite: bool
    seed: int
    device: str
    threads: Optional[int]


@dataclass
class SlimConfig:
    """``amc.slim``: HW7's network slimming, BN-γ ranked, fine-tuned after each step."""

    data: DataConfig
    logger: LoggerConfig
    checkpoint: Optional[str]
    steps: int
    factor: float
    seed: int
    device: str
    threads: Optional[int]
    resume: Optional[str]
    train: TrainConfig


@dataclass
class QuantizeConfig:
    """``amc.quantize``: HW7's fp16/uint8 weight files, and PyTorch's int8 PTQ."""

    data: DataConfig
    checkpoint: Optional[str]
    int8_ptq: bool
    calibration_images: int
    seed: int
    threads: Optional[int]


@dataclass
class PipelineConfig:
    """``amc.pipeline``: search, export, fine-tune and report in one run dir."""

    flops_budget: float
    checkpoint: Optional[str]
    episodes: int
    finetune_epochs: int
    seed: int
    data_group: str
    model_group: str
    logger_group: str
    extra_search_args: list[str] = field(default_factory=list)


@dataclass
class PredictData:
    root: Optional[str]


@dataclass
class PredictConfig:
    """``amc.predict``: HW7's prediction CSV from a compressed weight file."""

    data: PredictData
    model_file: Optional[str]
    output: str
    overwrite: bool
    max_bytes: Optional[int]
    crop: int
    batch_size: int
    threads: Optional[int]


@dataclass
class ProfileConfig:
    """``amc.profile``: MACs and params per layer."""

    model: ModelConfig
    checkpoint: Optional[str]
    checkpoint_model: Optional[str]
    image_size: Optional[int]


@dataclass
class DeployConfig:
    """``amc.deploy``: ONNX export checked by onnxruntime, and latency against the base."""

    model: ModelConfig
    data: DataConfig
    checkpoint: Optional[str]
    base: Optional[str]
    image_size: Optional[int]
    batch_sizes: list[int]
    threads: Optional[int]
    min_run_s: float
    seed: int


SCHEMAS: dict[str, type] = {
    "search": SearchConfig,
    "train": TrainRunConfig,
    "finetune": FinetuneConfig,
    "export": ExportConfig,
    "slim": SlimConfig,
    "quantize": QuantizeConfig,
    "pipeline": PipelineConfig,
    "predict": PredictConfig,
    "profile": ProfileConfig,
    "deploy": DeployConfig,
}


# ---------------------------------------------------------------- valid ranges
@dataclass(frozen=True)
class Range:
    """``low ≤ x ≤ high``, with either end open."""

    low: float = float("-inf")
    high: float = float("inf")
    low_open: bool = False
    high_open: bool = False

    def holds(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == float("inf"):
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_1, AT_LEAST_0, POSITIVE = Range(1), Range(0), Range(0, low_open=True)
FRACTION, UNIT = Range(0, 1, low_open=True), Range(0, 1)
# One table for every entry point: a key means the same thing wherever it appears. None stays allowed
# where the schema says Optional (e.g. threads=null: torch's default).
VALID_RANGES: dict[str, Range] = {
    **dict.fromkeys(("flops_budget", "params_budget", "latency_budget", "lower_bound", "factor"), FRACTION),
    **dict.fromkeys(("tau", "noise_decay"), FRACTION),
    **dict.fromkeys(("alpha", "discount", "baseline_alpha"), UNIT),
    **dict.fromkeys(("label_smoothing", "momentum"), Range(0, 1, high_open=True)),
    **dict.fromkeys(
        (
            "episodes", "channel_round", "calibration_images", "export_calibration_images", "points_per_image",
            "search_val_images", "test_images", "eval_batch_size", "threads", "stop_after", "epochs", "batch_size",
            "max_steps_per_epoch", "replay_episodes", "hidden_sizes", "train_limit", "search_val_limit",
            "test_limit", "crop", "steps", "finetune_epochs", "max_bytes", "image_size", "batch_sizes", "workers",
            "export_candidates", "adabn_images", "candidates", "rounds", "kd_steps", "kd_batch_size",
            "screen_images", "rescore_finalists",
        ),
        AT_LEAST_1,
    ),
    "promote.epochs": POSITIVE,  # a qualified key: the range of this one setting (fractions of an epoch)
    "promote.top_k": AT_LEAST_0,
    **dict.fromkeys(
        (
            "prefix_cache_mb", "seed", "split_seed", "lr", "weight_decay", "warmup_epochs", "num_workers",
            "warmup_episodes", "noise_sigma", "hint_weight", "search_val_size",
        ),
        AT_LEAST_0,
    ),
    **dict.fromkeys(("actor_lr", "critic_lr", "temperature", "min_run_s", "grad_clip_norm", "kd_lr"), POSITIVE),
}  # fmt: skip


def within(key: str, settings: Iterable[str]) -> bool:
    """``key`` (dotted) is one of ``settings`` or lies inside one of them (``train.lr`` is within ``train``)."""
    return any(key == name or key.startswith(name + ".") for name in settings)


def _leaf_settings(settings: Any, prefix: str = "") -> Iterator[tuple[str, str, Any, Any]]:
    """Every setting below ``settings`` that is not a group: (dotted key, field name, value, type hint)."""
    hints = get_type_hints(type(settings))
    for f in fields(settings):
        value, key = getattr(settings, f.name), prefix + f.name
        if is_dataclass(value):
            yield from _leaf_settings(value, key + ".")
        else:
            yield key, f.name, value, hints[f.name]


def budget_error(key: str, value: Any) -> str | None:
    """The one check of a budget (``flops_budget``, ``params_budget``, ``latency_budget``): the fraction of the base
    network's cost that may be kept, in (0, 1]. ``None`` when it holds, else the line that says why not."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN
    if number and VALID_RANGES[key].holds(value):
        return None
    return f"{key} must be in (0, 1] (the fraction of the base network's cost), got {value!r}"


def range_errors(settings: Any) -> list[str]:
    """Every numeric setting outside its valid range, as ``key must be …, got …`` (empty when all hold)."""
    errors = []
    for key, name, value, _ in _leaf_settings(settings):
        valid = VALID_RANGES.get(key, VALID_RANGES.get(name))
        if valid is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool) or not isinstance(item, int | float) or not valid.holds(item):
                errors.append(f"{key} must be {valid}, got {value!r}")
                break
    return errors


def choice_errors(settings: Any) -> list[str]:
    """Every setting outside its ``amc.choices`` Enum, as ``key must be one of …, got …``. Hydra refuses these
    while composing; this holds the same for settings a library caller builds with plain strings."""
    errors = []
    for key, _, value, hint in _leaf_settings(settings):
        choice = next((t for t in (hint, *get_args(hint)) if _is_choice(t)), None)
        if choice is not None and value is not None and value not in {m.value for m in choice}:
            errors.append(f"{key} must be one of {', '.join(m.value for m in choice)}, got {value!r}")
    return errors


def _is_choice(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Choice)
