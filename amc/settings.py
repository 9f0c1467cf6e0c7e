"""Typed settings of every entry point, with their defaults: the one place each default is written.

Hydra composes each entry point's config over these dataclasses (``amc.config`` registers them as structured
configs), so a typo or a wrongly typed override fails while composing, and the YAML files in ``conf/`` only choose
group options (``model``, ``data``, ``agent``, ...) and override. A field without a default is a group the YAML
chooses. Library code receives these objects (``amc.config.settings_of``), never the raw composed config.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
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
CACHE_DIR = "${oc.env:AMC_CACHE,'~/.cache/amc'}"  # cached base models, latency tables, teacher logits


@dataclass
class ModelConfig:
    """A network: a registry ``name`` or any importable builder ``_target_``, with its ``kwargs``; ``source`` is
    a ``.py`` file holding ``_target_`` when its module is not importable (only ever taken from this run)."""

    name: str
    supports_small_input: bool = False  # may take a stem of stride 1 for inputs of 64 px or less
    kwargs: dict[str, Any] = field(default_factory=dict)
    _target_: Optional[str] = None
    source: Optional[str] = None


@dataclass
class DataConfig:
    """A dataset and how it is split (``amc.data.build_data`` takes these as keywords)."""

    name: str
    root: Optional[str] = None
    download: bool = False  # fashion_mnist only: fetch it when root has none (needs internet)
    search_val_size: int = 5000  # images held out of the training split that strategies are scored on
    split_seed: int = 0
    augment: bool = True  # random crop (and flip where it keeps the label) on train
    train_limit: Optional[int] = None  # the first N of each split (smoke runs)
    search_val_limit: Optional[int] = None
    test_limit: Optional[int] = None
    crop: Optional[int] = None


@dataclass
class AgentConfig:
    """A search method (``conf/agent/NAME.yaml``): ``runner`` names its class; the other keys are its settings."""

    name: str
    warmup_episodes: int = 0
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

    kind: Tracking = Tracking["none"]
    project: str = "amc"
    mode: Optional[str] = None  # online | offline | disabled forces one


@dataclass
class DistillConfig:
    """The fine-tuning loss: ``ce``, ``kd`` (Hinton: (1 - alpha) CE + alpha T² KL) or ``hint`` (KD plus FitNets
    feature hints)."""

    kind: Distill = Distill["kd"]
    temperature: float = 4.0
    alpha: float = 0.9
    hint_weight: Optional[float] = None
    hint_layers: Optional[list[Any]] = None  # [student, teacher] layer pairs; null: the stages both nets share


@dataclass
class TrainConfig:
    """One schedule of the training loop (``amc.training.loop``); each job sets its own length and rate."""

    epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: Optimizer = Optimizer["sgd"]  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only
    weight_decay: float = 4.0e-5
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    num_workers: int = 0
    max_steps_per_epoch: Optional[int] = None
    channels_last: bool = True  # ~1.35x faster depthwise convs on CPU
    grad_clip_norm: Optional[float] = None  # clips the global gradient norm (e.g. 5.0)
    mixed_precision: Optional[MixedPrecision] = None  # bfloat16 (CPU, CUDA) | float16 (CUDA): autocast's dtype


@dataclass
class PromoteConfig:
    """Fidelity promotion (``amc.strategy.promotion``): the ``top_k`` best distinct strategies, fine-tuned
    ``epochs`` with KD from the base, decide the export (0: off; the search's best score is exported)."""

    top_k: int = 0
    epochs: float = 1.0  # of KD each; fractions of an epoch allowed (0.25: a quarter of the training set)
    temperature: float = 4.0
    alpha: float = 0.9
    # a short KD from a reconstructed network: lr 0.02 diverged after the warm-up for some seeds, and without the
    # clip it can diverge (RESULTS, section 2); the schedule's length is ``epochs``
    train: TrainConfig = field(default_factory=lambda: TrainConfig(warmup_epochs=0.1, lr=0.005, grad_clip_norm=2.0))


@dataclass
class SearchConfig:
    """``amc.search``: a per-layer channel strategy that meets a budget with the best score, exported."""

    model: ModelConfig
    data: DataConfig
    agent: AgentConfig
    logger: LoggerConfig
    # the budget: one of them, a fraction of the base's MACs (FLOPs = 2 x MACs, the same ratio), params, or latency
    # on this device at batch 1 (timed in latency_runtime); none given: flops 0.5
    flops_budget: Optional[float] = None
    params_budget: Optional[float] = None
    latency_budget: Optional[float] = None
    latency_runtime: LatencyRuntime = LatencyRuntime["pytorch"]  # pytorch (eager) | onnxruntime (amc[deploy])
    checkpoint: Optional[str] = None  # the base; none: the one amc ships for model and data (pretrained) ...
    pretrained: bool = True  # ... else one trained once (base_training) and cached in cache_dir
    cache_dir: str = CACHE_DIR
    episodes: int = 150  # strategies scored (probes included)
    # or fewer: the search stops once its evaluations have used this many CPU seconds of the search process (agent
    # updates included; setup and export not), so that methods whose evaluations differ in cost compare at equal cost
    search_cpu_s: Optional[float] = None
    lower_bound: float = 0.2  # smallest keep ratio per decision point
    prune_residual: bool = True  # also search residual-stream widths (groups coupled by adds)
    channel_round: int = 8  # kept channels are multiples of this (or the full width); 1 = no rounding
    fill_budget: bool = True  # spend budget left over by rounding on the most-pruned layers
    reward: Reward = Reward["acc"]  # acc | acc_flops | acc_params
    metric: Metric = Metric["top1"]  # the search-val accuracy strategies are scored by
    selection: Selection = Selection["lsq"]  # channel ranking: lsq | l1 (AMC's) | l2 | bn_gamma | random
    reconstruct: bool = True  # least squares on calibration features (open loop, cached for the search)
    # how a candidate is rebuilt before it is scored: lsq (refit consumers) | adabn (BN statistics recomputed,
    # EagleEye) | lsq+adabn | plain (sliced only) | lsq+kd (refit, then kd_steps of distillation from the base) |
    # lsq+kd+adabn | kl, lsq+kl, lsq+kd+kl (agreement with the base's outputs)
    score: Evaluator = Evaluator["lsq"]
    adabn_images: int = 1000  # training images the BN statistics are recomputed on (score=...adabn)
    kd_steps: int = 50  # score=...kd...: distillation steps per candidate, kd_batch_size images each, SGD at kd_lr
    kd_batch_size: int = 64
    kd_lr: float = 0.01  # momentum 0.9, constant
    calibration_images: int = 1000
    export_reconstruction: Reconstruction = Reconstruction["closed"]  # closed: refit on the pruned net's features
    export_calibration_images: Optional[int] = 5000  # train images the export refits on (null: the search's own)
    export_candidates: int = 1  # rebuild the best N strategies as exported and keep the best on search-val
    calibration_augment: bool = False
    points_per_image: int = 10
    search_val_images: Optional[int] = None  # null: the whole search-val split
    # episodes are scored on the first screen_images of it (null: all), and the best rescore_finalists distinct
    # strategies again on all before the export picks one (RESULTS, "first result")
    screen_images: Optional[int] = 1000
    rescore_finalists: int = 10
    test_images: Optional[int] = None  # the best strategy's final test top-1 uses the whole test split
    eval_batch_size: int = 125  # small enough that its largest activation is reused, not page-faulted
    prefix_cache_mb: float = 200  # memory for early-layer activations strategies share (0: off)
    # float32 | bfloat16 | auto = bfloat16 where the hardware has it (AVX512-BF16/AMX, CUDA), else float32
    eval_precision: EvalPrecision = EvalPrecision["auto"]
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    seed: int = 2018
    device: str = "auto"  # auto = cuda when present
    threads: Optional[int] = None  # CPU threads for torch (null: torch's default)
    resume: Optional[str] = None  # a killed search's run dir
    # continue: a run dir that holds a search resumes it (a finished one is kept), so a multirun launched again
    # picks up where each job stopped
    on_existing: OnExisting = OnExisting["refuse"]
    stop_after: Optional[int] = None  # stop after this many episodes in this invocation (resume later)
    workers: int = 1  # episodes scored at once, each worker a process with its own scorer (SB3 SubprocVecEnv)
    # e.g. [cuda:0,cuda:1]: worker i runs on devices[i % len]; null: `device` for all (on CPU the threads are split)
    devices: Optional[list[str]] = None
    # the base a search trains when there is no checkpoint and amc ships none for the model and data: a short
    # schedule, chosen by the runs in the lab notebook ("First run")
    base_training: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=2, batch_size=64, eval_batch_size=125)
    )


# What a run saved before a setting existed ran with, where that differs from today's default: a resumed run goes
# on as it began (``amc.config`` fills these into a saved config that lacks them).
SAVED_BEFORE: dict[str, dict[str, Any]] = {
    "SearchConfig": {"eval_precision": "float32", "screen_images": None, "pretrained": False},
}


@dataclass
class TrainRunConfig:
    """``amc.train``: a network trained from scratch, optionally distilled from ``teacher``."""

    model: ModelConfig
    data: DataConfig
    logger: LoggerConfig
    seed: int = 0
    teacher: Optional[str] = None  # a checkpoint to distil from (bare state_dicts are read as teacher_model)
    teacher_model: ModelConfig = field(default_factory=lambda: ModelConfig("resnet18"))
    distill: DistillConfig = field(default_factory=DistillConfig)  # with a teacher only; HW7's: T 20, alpha 0.5
    device: str = "auto"
    threads: Optional[int] = None
    resume: Optional[str] = None  # a run dir of an interrupted run: continues from its last epoch
    init_checkpoint: Optional[str] = None  # start from these weights with a fresh schedule (a warm restart)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15, lr=0.1))


@dataclass
class FinetuneConfig:
    """``amc.finetune``: a pruned network recovered by distillation from its base."""

    model: ModelConfig  # how to read a bare state_dict teacher
    data: DataConfig
    distill: DistillConfig
    logger: LoggerConfig
    checkpoint: Optional[str] = None
    teacher: Optional[str] = None  # default: the base checkpoint the pruned model records
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    resume: Optional[str] = None
    cache_teacher_logits: Any = "auto"  # auto: the teacher's logits computed once when data.augment=false (kd only)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4, lr=0.02, warmup_epochs=0.1))


@dataclass
class ExportConfig:
    """``amc.export``: a channel list or a strategy.json applied to a base checkpoint."""

    model: ModelConfig
    data: DataConfig
    checkpoint: Optional[str] = None
    channels: Optional[list[int]] = None  # kept output channels per decision point, in order
    strategy: Optional[str] = None  # or a search's strategy.json
    selection: Optional[Selection] = None  # null: as the strategy file's search, else l1
    prune_residual: Optional[bool] = None  # null: the strategy file's, else true
    reconstruct: bool = True  # least squares on the consumer of each pruned point
    reconstruction: Reconstruction = Reconstruction["open"]  # open (inputs from the original, as AMC) | closed
    calibration_images: int = 1000  # from the train split
    calibration_augment: bool = False
    points_per_image: int = 10
    evaluate: bool = True  # search-val and test top-1 before and after reconstruction
    output: Optional[str] = None  # default: RUN_DIR/pruned.pt
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None


@dataclass
class SlimConfig:
    """``amc.slim``: HW7's network slimming, BN-γ ranked, fine-tuned after each step."""

    data: DataConfig
    logger: LoggerConfig
    checkpoint: Optional[str] = None
    steps: int = 5  # the course: width x 0.95, five times (0.95 ... 0.7738)
    factor: float = 0.95
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    resume: Optional[str] = None
    # fine-tuning after each step: the course's 5 epochs of CE with AdamW 1e-3, batch 32
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=5, batch_size=32, eval_batch_size=256, optimizer=Optimizer["adamw"], lr=1.0e-3, weight_decay=1.0e-2,
        channels_last=False,
    ))  # fmt: skip


@dataclass
class QuantizeConfig:
    """``amc.quantize``: HW7's fp16/uint8 weight files, and PyTorch's int8 PTQ."""

    data: DataConfig
    checkpoint: Optional[str] = None
    int8_ptq: bool = True  # also PyTorch's own static int8 quantization, with CPU latency
    calibration_images: int = 256
    seed: int = 0
    threads: Optional[int] = None


@dataclass
class PipelineConfig:
    """``amc.pipeline``: search, export, fine-tune and report in one run dir."""

    flops_budget: float = 0.5
    checkpoint: Optional[str] = None
    episodes: int = 150
    finetune_epochs: int = 4
    seed: int = 2018
    data_group: str = "fashion_mnist"
    model_group: str = "mobilenet_v1"
    logger_group: str = "wandb"
    extra_search_args: list[str] = field(default_factory=list)  # e.g. ["experiment=smoke"]


@dataclass
class PredictData:
    """Where HW7's unlabelled test images are."""

    root: Optional[str] = "./data/food-11"


@dataclass
class PredictConfig:
    """``amc.predict``: HW7's prediction CSV from a compressed weight file."""

    data: PredictData = field(default_factory=PredictData)
    model_file: Optional[str] = None
    output: str = "pred.csv"
    overwrite: bool = False
    max_bytes: Optional[int] = 300000  # HW7's limit; null disables the check
    crop: int = 256  # the course's CenterCrop
    batch_size: int = 64
    threads: Optional[int] = None


@dataclass
class ProfileConfig:
    """``amc.profile``: MACs and params per layer."""

    model: ModelConfig
    checkpoint: Optional[str] = None  # our checkpoint (architecture inside) or a bare state_dict of `model`
    checkpoint_model: Optional[str] = None  # registry name for a bare state_dict
    image_size: Optional[int] = None  # default: the checkpoint's training size, else 224


@dataclass
class DeployConfig:
    """``amc.deploy``: ONNX export checked by onnxruntime, and latency against the base."""

    model: ModelConfig  # how to read a bare state_dict base
    data: DataConfig
    checkpoint: Optional[str] = None
    base: Optional[str] = None  # default: the checkpoint's base_checkpoint
    image_size: Optional[int] = None  # default: the size the checkpoint was trained at
    batch_sizes: list[int] = field(default_factory=lambda: [1, 256])
    threads: Optional[int] = 2
    min_run_s: float = 1.0  # each latency: warm-up, then repeated runs filling at least this long; median and IQR
    seed: int = 0


def field_default(schema: type, name: str) -> Any:
    """The default of ``schema``'s field ``name`` (a fresh object where a factory builds it)."""
    spec = {f.name: f for f in fields(schema)}[name]
    return spec.default_factory() if spec.default_factory is not MISSING else spec.default


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
    **dict.fromkeys(
        ("actor_lr", "critic_lr", "temperature", "min_run_s", "grad_clip_norm", "kd_lr", "search_cpu_s"), POSITIVE
    ),
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
