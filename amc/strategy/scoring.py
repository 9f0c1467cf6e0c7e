"""Scores channel strategies during a search: prune physically, reconstruct, evaluate on search-val.

Everything that does not depend on the strategy is computed once: the channel rankings, the
least-squares statistics, and the (normalised) search-val tensors. Per strategy we only solve
small least-squares systems, slice weights, fold BN and run a physically smaller network, starting from
cached activations where the strategy agrees with earlier ones on the early layers (``amc.strategy.prefix_cache``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from amc.choices import Evaluator
from amc.errors import AmcError
from amc.pruning.apply import selection_scores
from amc.pruning.bn_recalibration import recalibrate_batchnorms
from amc.pruning.fusion import batchnorm_pairs, fold_batchnorms
from amc.pruning.reconstruction import OpenLoopReconstructor, closed_loop_overrides
from amc.pruning.slicing import slice_model
from amc.pruning.staged_forward import staged_forward
from amc.pruning.structure import PrunableStructure
from amc.strategy.prefix_cache import PrefixCache
from amc.training.evaluation import topk_correct

# How a candidate is rebuilt before it is evaluated on search-val; plain: sliced only (EagleEye's "vanilla")
SCORES = tuple(Evaluator)
KD_CLIP_NORM = 2.0  # the promotion's fine-tuning clips at 2 as well (RESULTS, session 21: unclipped runs diverged)


@dataclass
class Score:
    accuracy: float  # percent, on search-val, by ``metric``
    top1: float
    top5: float
    timings: dict[str, float] = field(default_factory=dict)
    reused_stages: int = 0  # leading trunk stages taken from the prefix cache instead of computed


@dataclass(frozen=True)
class ScoringImages:
    """What a scorer reads: search-val to evaluate on, and the images it rebuilds candidates with."""

    val_images: torch.Tensor
    val_labels: torch.Tensor
    calibration: torch.Tensor | None = None  # least squares (``None`` or empty: no reconstruction)
    recalibration: torch.Tensor | None = None  # AdaBN's BN statistics (``score`` with ``adabn``)
    # ``count`` → calibration images, for consumers ``calibration`` leaves underdetermined (a classifier: one row
    # per image)
    more_calibration: Callable[[int], torch.Tensor] | None = None
    distill: torch.Tensor | None = None  # training images the ``kd`` evaluators distil a candidate on


@dataclass(frozen=True)
class ScorerSettings:
    """How a scorer rebuilds and evaluates a candidate.

    ``score``: steps joined by ``+`` (``SCORES``): ``lsq`` refits each consumer by least squares (needs calibration
    images), ``kd`` then distils the candidate from the base for ``kd_steps`` steps on the distillation images,
    ``adabn`` recomputes the BN statistics on the recalibration images; ``plain`` does none. The score is search-val
    top-1, or with ``kl`` the agreement with the base, ``100·exp(−KL(base ‖ candidate))`` over search-val.
    ``dtype``: what the pruned networks are evaluated in (``amc.runtime.hardware.eval_dtype``); the least squares
    and the export stay float32.
    ``prefix_cache_mb``: memory for reused early activations (0: evaluate every strategy in full).
    """

    score: str = "lsq"
    selection: str = "l1"  # channel ranking (``amc.pruning.apply.selection_scores``)
    metric: str = "top1"  # or top5
    points_per_image: int = 10
    batch_size: int = 1000
    seed: int = 0
    channels_last: bool = True
    prefix_cache_mb: float = 0
    dtype: torch.dtype = torch.float32
    kd_steps: int = 50
    kd_batch_size: int = 64
    kd_lr: float = 0.01
    kd_temperature: float = 4.0


class EvaluateError(AmcError):
    """A user's ``evaluate`` raised, or returned something other than a finite number."""


def call_user_metric(evaluate: Callable[[nn.Module], float], network: nn.Module) -> float:
    """``evaluate(network)`` as a finite float; anything else is one :class:`EvaluateError` line."""
    try:
        value = evaluate(network)
    except AmcError:
        raise
    except Exception as exc:
        why = " ".join(str(exc).split())[:200]
        raise EvaluateError(f"evaluate raised {type(exc).__name__}: {why}") from exc
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EvaluateError(f"evaluate must return a number (higher is better), got a {type(value).__name__}")
    if not math.isfinite(value):
        raise EvaluateError(f"evaluate returned {value}; it must return a finite number (higher is better)")
    return float(value)


class StrategyScorer:
    """Turns a channel list into a search-val accuracy of the pruned, rebuilt network (``model`` in eval mode)."""

    def __init__(
        self,
        model: nn.Module,
        structure: PrunableStructure,
        images: ScoringImages,
        settings: ScorerSettings = ScorerSettings(),
        device: torch.device | str = "cpu",
        evaluate: Callable[[nn.Module], float] | None = None,
    ) -> None:
        """:param evaluate: a user's metric, ``evaluate(network) -> float`` (higher is better), called on each
        candidate instead of search-val top-1; ``images.val_images`` may then be empty."""
        self.model, self.structure, self.settings = model.eval(), structure, settings
        self.user_evaluate = evaluate
        self.device = torch.device(device)
        self.calibration_images = images.calibration
        self._recalibration = images.recalibration
        self._distill_images = images.distill
        self._distill_targets: torch.Tensor | None = None  # the base's logits on them, computed when first needed
        self._val_targets: torch.Tensor | None = None  # the base's search-val logits (``kl``)
        self.prefix_cache: PrefixCache | None = None  # set below, once the evaluator is chosen
        self.use_score(settings.score)
        t0 = time.perf_counter()
        self.reconstructor = None
        if images.calibration is not None and len(images.calibration):
            self.reconstructor = OpenLoopReconstructor(
                model,
                structure,
                images.calibration,
                settings.points_per_image,
                settings.seed,
                more_images=images.more_calibration,
            )
        stats = self.reconstructor.stats if self.reconstructor else None
        # Channel rankings do not change during a search: the top-c of a fixed order is a prefix.
        self.rankings = [
            torch.argsort(s, descending=True, stable=True)
            for s in selection_scores(model, structure, settings.selection, settings.seed, stats)
        ]
        self.setup_s = time.perf_counter() - t0
        four_d = images.val_images.dim() == 4
        fmt = torch.channels_last if settings.channels_last and four_d else torch.contiguous_format
        self.memory_format = fmt
        self.val_images = images.val_images.to(self.device, settings.dtype).contiguous(memory_format=fmt)
        self.val_labels = images.val_labels.to(self.device)
        self.batchnorm_pairs = batchnorm_pairs(model)  # traced once; pruned copies keep the module names
        # The forward traced once: stages the prefix cache can start from, and conv + activation fused on CPU.
        self.staged = staged_forward(model, structure)
        probe = images.val_images if len(images.val_images) else images.calibration
        probe = probe[:2].to(self.device) if probe is not None and len(probe) else None
        if probe is None or evaluate is not None:
            self.staged = None  # a user's metric runs the network itself
        if self.staged is not None and not (
            self.staged.matches_forward(model, probe)
            and self.staged.matches_forward(
                self._prepare(copy.deepcopy(model)), probe.to(settings.dtype, memory_format=fmt)
            )
        ):
            warnings.warn(f"{structure.arch_name}: staged forward != forward(); using forward()", stacklevel=2)
            self.staged = None
        cache_mb = 0 if self.distil else settings.prefix_cache_mb  # a trained candidate shares no early activations
        if cache_mb > 0 and self.staged is None:
            warnings.warn(f"{structure.arch_name}: no staged forward (torch.fx); no prefix cache", stacklevel=2)
        self.prefix_cache = PrefixCache(self.staged, int(cache_mb * 2**20)) if cache_mb > 0 and self.staged else None

    def use_val(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Score on ``images`` and ``labels`` from now on (the finalists on all of search-val, after a screen on part
        of it); the prefix cache, which holds activations of the old images, is emptied."""
        self.val_images = images.to(self.device, self.settings.dtype).contiguous(memory_format=self.memory_format)
        self.val_labels = labels.to(self.device)
        self._val_targets = None
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def use_score(self, score: str) -> None:
        """Rebuild candidates by ``score`` from now on (``SCORES``). Refused with a prefix cache, whose stored
        activations were computed by the evaluator it started with."""
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        steps = set(str(score).split("+"))
        if "adabn" in steps and (self._recalibration is None or not len(self._recalibration)):
            raise ValueError(f"score={score} needs recalibration images")
        if "kd" in steps and (self._distill_images is None or not len(self._distill_images)):
            raise ValueError(f"score={score} needs distillation images")
        if self.prefix_cache is not None and score != self.score_name:
            raise ValueError("a scorer with a prefix cache keeps the evaluator it started with")
        if self.prefix_cache is not None and "kd" in steps:
            raise ValueError(
                f"score={score} trains every candidate, so no prefix of it can be reused: prefix_cache_mb=0"
            )
        self.score_name = score
        self.refit = "lsq" in steps
        self.distil = "kd" in steps
        self.agreement = "kl" in steps
        self.recalibration_images = self._recalibration if "adabn" in steps else None

    @property
    def description(self) -> str:
        """The evaluator as a run records it: its name, with the distillation steps where it distils."""
        return (
            str(self.score_name).replace("kd", f"kd{self.settings.kd_steps}") if self.distil else str(self.score_name)
        )

    def use_fidelity(self, kd_steps: int) -> None:
        """Rebuild candidates by the refit alone (``kd_steps`` 0) or the refit then ``kd_steps`` steps of
        distillation from the base: the fidelities of a multi-fidelity search."""
        self.use_score("lsq+kd" if kd_steps else "lsq")
        self.settings = dataclasses.replace(self.settings, kd_steps=kd_steps)

    def keep(self, channels: Sequence[int]) -> list[torch.Tensor]:
        return [r[: int(c)].sort().values for r, c in zip(self.rankings, channels, strict=True)]

    def build(self, channels: Sequence[int], private: bool = False) -> tuple[nn.Module, dict[str, float]]:
        """The physically pruned (and reconstructed, distilled, recalibrated) network, with timings of each stage.

        :param private: copy every tensor (else tensors no decision touches are the base's own, to be read only).
        """
        t0 = time.perf_counter()
        keep = self.keep(channels)
        with torch.no_grad():
            overrides = self.reconstructor.overrides(keep) if self.reconstructor and self.refit else None
            t1 = time.perf_counter()
            share = not (self.distil or private)
            pruned = slice_model(self.model, self.structure, keep, overrides, share_unchanged=share)
        t2 = time.perf_counter()
        timings = {"reconstruct_s": t1 - t0, "prune_s": t2 - t1}
        if self.distil:
            self.distil_briefly(pruned)
            timings["distill_s"] = time.perf_counter() - t2
            t2 = time.perf_counter()
        if self.recalibration_images is not None:
            self.recalibrate(pruned)
            timings["recalibrate_s"] = time.perf_counter() - t2
        return pruned, timings

    def distil_briefly(self, net: nn.Module) -> nn.Module:
        """``kd_steps`` steps of distillation from the base's logits on the distillation images (in place, float32,
        the same batches for every candidate, so candidates are compared on equal terms)."""
        from amc.training.steps import Stepper, distill_on_batches, soft_logit_loss

        s = self.settings
        images = self._distill_images
        if self._distill_targets is None:
            self._distill_targets = self._base_logits(images)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(s.seed))
        batches = [
            (images[idx].to(self.device), self._distill_targets[idx])
            for idx in order.split(s.kd_batch_size)
            if len(idx) == s.kd_batch_size or len(images) < s.kd_batch_size
        ]
        net.to(self.device, torch.float32, memory_format=self.memory_format)
        optimizer = torch.optim.SGD(net.parameters(), lr=s.kd_lr, momentum=0.9)
        soft = soft_logit_loss(s.kd_temperature)
        # seeded dropout: a candidate scores the same every time; clipped: a badly pruned one must not diverge
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(self._rng_devices()):
            torch.manual_seed(s.seed)
            stepper = Stepper(optimizer, clip_norm=KD_CLIP_NORM)
            distill_on_batches(net, lambda _: None, batches, lambda out, _, b: soft(out, b[1]), stepper, s.kd_steps)
        return net.eval()

    def _rng_devices(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    @torch.inference_mode()
    def _base_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The base network's logits on ``images`` (float32, eval mode)."""
        batches = range(0, len(images), self.settings.batch_size)
        return torch.cat(
            [self.model(images[i : i + self.settings.batch_size].to(self.device)) for i in batches]
        ).float()

    def recalibrate(self, net: nn.Module, images: torch.Tensor | None = None) -> nn.Module:
        """``net``'s BN statistics recomputed on the recalibration images (or ``images``), in float32."""
        images = self.recalibration_images if images is None else images
        if images is None:
            return net
        net.to(self.device, memory_format=self.memory_format)
        batches = images.to(self.device).contiguous(memory_format=self.memory_format)
        return recalibrate_batchnorms(net, batches, self.settings.batch_size)

    def build_closed_loop(self, channels: Sequence[int], images: torch.Tensor | None = None) -> nn.Module:
        """The final export: each consumer refit on the features of the network pruned so far (slower, better).

        :param images: calibration images for the refit (default: the search's own).
        """
        keep = self.keep(channels)
        images = self.calibration_images if images is None else images
        if images is None or not len(images) or not self.refit:
            return self.recalibrate(slice_model(self.model, self.structure, keep))
        overrides = closed_loop_overrides(
            self.model, self.structure, keep, images, self.settings.points_per_image, self.settings.seed
        )
        return self.recalibrate(slice_model(self.model, self.structure, keep, overrides))

    def score(self, channels: Sequence[int]) -> Score:
        """The candidate ``channels`` rebuilt by the evaluator and scored on search-val (or by the user's metric)."""
        if self.user_evaluate is not None:
            return self._score_by_user(channels)
        pruned, timings = self.build(channels)
        with torch.inference_mode():
            t0 = time.perf_counter()
            net = self._prepare(pruned)
            logits, reused = self._logits(net, channels)
            c1, c5 = topk_correct(logits, self.val_labels)
            n = len(self.val_labels)
            top1, top5 = 100 * c1 / n, 100 * c5 / n
            value = top5 if self.settings.metric == "top5" else top1
            if self.agreement:
                value = self.teacher_agreement(logits)
            timings["evaluate_s"] = time.perf_counter() - t0
        return Score(value, top1, top5, timings, reused)

    def _score_by_user(self, channels: Sequence[int]) -> Score:
        assert self.user_evaluate is not None
        pruned, timings = self.build(channels, private=True)  # the user's code may train what it is handed
        t0 = time.perf_counter()
        value = call_user_metric(self.user_evaluate, pruned.to(self.device).eval())
        timings["evaluate_s"] = time.perf_counter() - t0
        return Score(value, math.nan, math.nan, timings)

    def teacher_agreement(self, logits: torch.Tensor) -> float:
        """``100·exp(−KL(base ‖ candidate))`` over search-val, in percent: 100 when the candidate's predictive
        distribution is the base's, falling as it departs (the ranking LLM width pruning uses)."""
        if self._val_targets is None:
            self._val_targets = self._base_logits(self.val_images.float())
        kl = torch.nn.functional.kl_div(
            torch.log_softmax(logits.float(), 1),
            torch.log_softmax(self._val_targets, 1),
            reduction="batchmean",
            log_target=True,
        )
        return 100 * float(torch.exp(-kl))

    def logits(self, channels: Sequence[int]) -> torch.Tensor:
        """Search-val logits of the pruned, reconstructed network (through the prefix cache when on)."""
        pruned = self.build(channels)[0]
        with torch.inference_mode():
            return self._logits(self._prepare(pruned), channels)[0]

    @torch.inference_mode()
    def time_base_evaluation(self, dtype: torch.dtype = torch.float32) -> float:
        """Seconds to evaluate the unpruned base on all search-val images, BN folded, in the scorer's layout and
        batches, in full and in ``dtype``: the yardstick for an episode's cost (float32: the evaluation a user
        runs; the scorer's own dtype: what the episode would cost with neither pruning nor cache)."""
        if self.user_evaluate is not None:  # the user's metric on the base
            t0 = time.perf_counter()
            call_user_metric(self.user_evaluate, copy.deepcopy(self.model).eval())
            return time.perf_counter() - t0
        net = self._prepare(copy.deepcopy(self.model), dtype)  # folding and casting work in place
        images = self.val_images.to(dtype)
        net(images[: self.settings.batch_size])  # warm-up: kernels, allocator
        t0 = time.perf_counter()
        for i in range(0, len(self.val_labels), self.settings.batch_size):
            net(images[i : i + self.settings.batch_size])
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def _prepare(self, net: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
        """``net`` (a pruned copy, changed in place) with BN folded into the convs, on the scoring device, layout and
        dtype; tensors it shares with the base are copied on the cast, not changed."""
        net = fold_batchnorms(net, self.batchnorm_pairs)
        return net.to(self.device, dtype or self.settings.dtype, memory_format=self.memory_format)

    def _logits(self, net: nn.Module, channels: Sequence[int]) -> tuple[torch.Tensor, int]:
        """All search-val logits, and how many leading trunk stages came from the prefix cache."""
        if self.prefix_cache is not None:
            return self.prefix_cache.logits(net, channels, self.val_images, self.settings.batch_size)
        batches = range(0, len(self.val_labels), self.settings.batch_size)
        if self.staged is None:
            return torch.cat([net(self.val_images[i : i + self.settings.batch_size]) for i in batches]), 0
        bound = self.staged.bind(net)
        images = self.val_images
        return torch.cat(
            [self.staged.run(net, images[i : i + self.settings.batch_size], 0, None, bound) for i in batches]
        ), 0
