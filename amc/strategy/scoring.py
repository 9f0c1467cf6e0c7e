"""Scores channel strategies during a search: prune physically, reconstruct, evaluate on search-val.

Everything that does not depend on the strategy is computed once: the channel rankings, the
least-squares statistics, and the (normalised) search-val tensors. Per strategy we only solve
small least-squares systems, slice weights, fold BN and run a physically smaller network, starting from
cached activations where the strategy agrees with earlier ones on the early layers (``amc.strategy.prefix_cache``).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from amc.choices import Evaluator
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


@dataclass(frozen=True)
class ScorerSettings:
    """How a scorer rebuilds and evaluates a candidate.

    ``score``: ``lsq`` refits each consumer by least squares (needs calibration images), ``adabn`` recomputes the
    BN statistics on the recalibration images, ``lsq+adabn`` does both, ``plain`` neither (``SCORES``).
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


class StrategyScorer:
    """Turns a channel list into a search-val accuracy of the pruned, rebuilt network (``model`` in eval mode)."""

    def __init__(
        self,
        model: nn.Module,
        structure: PrunableStructure,
        images: ScoringImages,
        settings: ScorerSettings = ScorerSettings(),
        device: torch.device | str = "cpu",
    ) -> None:
        self.model, self.structure, self.settings = model.eval(), structure, settings
        self.device = torch.device(device)
        self.calibration_images = images.calibration
        self._recalibration = images.recalibration
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
        fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.memory_format = fmt
        self.val_images = images.val_images.to(self.device, settings.dtype).contiguous(memory_format=fmt)
        self.val_labels = images.val_labels.to(self.device)
        self.batchnorm_pairs = batchnorm_pairs(model)  # traced once; pruned copies keep the module names
        # The forward traced once: stages the prefix cache can start from, and conv + activation fused on CPU.
        self.staged = staged_forward(model, structure)
        probe = images.val_images[:2].to(self.device)
        if self.staged is not None and not (
            self.staged.matches_forward(model, probe)
            and self.staged.matches_forward(
                self._prepare(copy.deepcopy(model)), probe.to(settings.dtype, memory_format=fmt)
            )
        ):
            warnings.warn(f"{structure.arch_name}: staged forward != forward(); using forward()", stacklevel=2)
            self.staged = None
        cache_mb = settings.prefix_cache_mb
        if cache_mb > 0 and self.staged is None:
            warnings.warn(f"{structure.arch_name}: no staged forward (torch.fx); no prefix cache", stacklevel=2)
        self.prefix_cache = PrefixCache(self.staged, int(cache_mb * 2**20)) if cache_mb > 0 and self.staged else None

    def use_score(self, score: str) -> None:
        """Rebuild candidates by ``score`` from now on (``SCORES``). Refused with a prefix cache, whose stored
        activations were computed by the evaluator it started with."""
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if "adabn" in score and (self._recalibration is None or not len(self._recalibration)):
            raise ValueError(f"score={score} needs recalibration images")
        if self.prefix_cache is not None and score != self.score_name:
            raise ValueError("a scorer with a prefix cache keeps the evaluator it started with")
        self.score_name = score
        self.refit = "lsq" in score
        self.recalibration_images = self._recalibration if "adabn" in score else None

    def keep(self, channels: Sequence[int]) -> list[torch.Tensor]:
        return [r[: int(c)].sort().values for r, c in zip(self.rankings, channels, strict=True)]

    def build(self, channels: Sequence[int]) -> tuple[nn.Module, dict[str, float]]:
        """The physically pruned (and reconstructed) network, with timings of each stage."""
        t0 = time.perf_counter()
        keep = self.keep(channels)
        overrides = self.reconstructor.overrides(keep) if self.reconstructor and self.refit else None
        t1 = time.perf_counter()
        pruned = slice_model(self.model, self.structure, keep, overrides, share_unchanged=True)
        t2 = time.perf_counter()
        timings = {"reconstruct_s": t1 - t0, "prune_s": t2 - t1}
        if self.recalibration_images is not None:
            self.recalibrate(pruned)
            timings["recalibrate_s"] = time.perf_counter() - t2
        return pruned, timings

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

    @torch.inference_mode()
    def score(self, channels: Sequence[int]) -> Score:
        pruned, timings = self.build(channels)
        t0 = time.perf_counter()
        net = self._prepare(pruned)
        logits, reused = self._logits(net, channels)
        c1, c5 = topk_correct(logits, self.val_labels)
        n = len(self.val_labels)
        timings["evaluate_s"] = time.perf_counter() - t0
        top1, top5 = 100 * c1 / n, 100 * c5 / n
        return Score(top5 if self.settings.metric == "top5" else top1, top1, top5, timings, reused)

    @torch.inference_mode()
    def logits(self, channels: Sequence[int]) -> torch.Tensor:
        """Search-val logits of the pruned, reconstructed network (through the prefix cache when on)."""
        net = self._prepare(self.build(channels)[0])
        return self._logits(net, channels)[0]

    @torch.inference_mode()
    def time_base_evaluation(self, dtype: torch.dtype = torch.float32) -> float:
        """Seconds to evaluate the unpruned base on all search-val images, BN folded, in the scorer's layout and
        batches, in full and in ``dtype``: the yardstick for an episode's cost (float32: the evaluation a user
        runs; the scorer's own dtype: what the episode would cost with neither pruning nor cache)."""
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
