"""Least-squares reconstruction of the layer that consumes pruned channels (AMC §3, ThiNet-style).

For a consumer layer (1×1 or k×k Conv2d, or Linear) we sample feature-map points from calibration
images and refit its weights on the kept input channels so that its outputs match the *original*
network's outputs: ``min_W ‖X_kept·Wᵀ − Y‖²``. k×k convs are unfolded into patches, so one solver
covers every kernel size.

Open loop (AMC): X comes from the original network, so ``XᵀX`` and ``XᵀY`` are computed once per
search and every strategy is a small solve on a sub-block of them. Closed loop: X comes from the
network pruned so far, layer by layer (for export; slower, usually more accurate).
A tiny ridge keeps the solve finite when dead channels make ``XᵀX`` singular.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from amc.errors import ConfigError
from amc.pruning import linear_solve
from amc.pruning.slicing import kept_positions
from amc.pruning.staged import StagedForward, staged_forward
from amc.pruning.structure import PrunableStructure

RIDGE = 1e-6  # relative to the mean diagonal of XᵀX
DEFAULT_MAX_COLUMNS = 4608  # XᵀX of a 3×3 conv reading 512 channels: 170 MB in float64
# Fewer rows than this per column leave a refit underdetermined (a classifier fit on one row per image, 1,000
# images for 1,024 inputs): any subset of channels then reproduces the targets, with large weights.
MIN_ROWS_PER_COLUMN = 2


@dataclass
class ConsumerStats:
    gram: torch.Tensor  # XᵀX, float64, [C·k², C·k²]
    cross: torch.Tensor  # XᵀY, float64, [C·k², O]
    kernel_area: int
    rows: int


def well_posed(stats: ConsumerStats | None) -> bool:
    return stats is not None and stats.rows >= MIN_ROWS_PER_COLUMN * len(stats.gram)


def images_for_rows(stats: ConsumerStats, images: int) -> int:
    """How many calibration images make ``stats``' problem well posed, at its rows per image."""
    per_image = max(1, stats.rows // max(1, images))
    return -(-MIN_ROWS_PER_COLUMN * len(stats.gram) // per_image)


def sampled_positions(
    layer: nn.Module, y: torch.Tensor, points: int, generator: torch.Generator
) -> torch.Tensor | None:
    """Which ``points`` output positions per image become rows (``None`` for a Linear: one row per image)."""
    if isinstance(layer, nn.Linear):
        return None
    n, positions = y.shape[0], y.shape[2] * y.shape[3]
    take = min(points, positions)
    return torch.argsort(torch.rand(n, positions, generator=generator), dim=1)[:, :take].to(y.device)


def input_rows(layer: nn.Module, x: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
    """The regression's X rows at ``pick``: unfolded patches for a conv, the features for a Linear."""
    if pick is None:
        return x.reshape(-1, x.shape[-1])
    if layer.groups != 1:
        raise ValueError("reconstruction needs a dense (groups=1) consumer conv")
    patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # [N, C·k², L]
    xs = patches.gather(2, pick.unsqueeze(1).expand(-1, patches.shape[1], -1))
    return xs.transpose(1, 2).reshape(-1, patches.shape[1])


def output_rows(layer: nn.Module, y: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
    """The regression's Y rows at ``pick``, the bias taken off (the solve fits the weights only)."""
    if pick is None:
        y = y - layer.bias if layer.bias is not None else y
        return y.reshape(-1, y.shape[-1])
    if layer.bias is not None:
        y = y - layer.bias.view(1, -1, 1, 1)
    y = y.flatten(2)  # [N, O, L]
    ys = y.gather(2, pick.unsqueeze(1).expand(-1, y.shape[1], -1))
    return ys.transpose(1, 2).reshape(-1, y.shape[1])


def sample_rows(
    layer: nn.Module, x: torch.Tensor, y: torch.Tensor, points: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (X, Y) of the regression for one batch: ``points`` random output positions per image."""
    pick = sampled_positions(layer, y, points, generator)
    return input_rows(layer, x, pick), output_rows(layer, y, pick)


def kernel_area(layer: nn.Module) -> int:
    return layer.kernel_size[0] * layer.kernel_size[1] if isinstance(layer, nn.Conv2d) else 1


def input_columns(idx: torch.Tensor, area: int) -> torch.Tensor:
    """Columns of the unfolded input that belong to channels ``idx`` (unfold is channel-major)."""
    return (idx.view(-1, 1) * area + torch.arange(area)).flatten()


def solve(stats: ConsumerStats, idx: torch.Tensor) -> torch.Tensor:
    """Least-squares weights ``[O, len(idx)·k²]`` on the kept channels."""
    cols = input_columns(idx.to(torch.long).cpu(), stats.kernel_area)
    gram = stats.gram.index_select(0, cols).index_select(1, cols)
    ridge = RIDGE * gram.diagonal().mean().clamp_min(1e-12)
    gram = gram + ridge * torch.eye(len(cols), dtype=gram.dtype)
    w = linear_solve.solve(gram, stats.cross.index_select(0, cols))
    return w.T.float()


def full_width_weight(layer: nn.Module, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Put solved weights back into the consumer's full-width weight, dropped inputs zeroed."""
    full = torch.zeros_like(layer.weight.detach().cpu())
    shape = (full.shape[0], len(idx), *full.shape[2:])
    full[:, idx.to(torch.long).cpu()] = w.reshape(shape)
    return full


def _batches(images: torch.Tensor, batch_size: int):
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


class _AllCaptured(Exception):
    """Raised by a forward hook once a pass has given every tensor it was run for: skips the rest of it."""


class _RowCapture:
    """Forward hooks that keep one batch's sampled regression rows of each consumer: X read from ``source``,
    Y from ``model``. A pass stops at the last layer it is needed for (``run``).

    Each hook keeps only its layer's sampled rows, never the activation: the peak memory is one layer's
    activations, not every consumer's at once (≈ 400 MB less for 250 FMNIST-MBV1 images).
    """

    def __init__(
        self, model: nn.Module, layers: dict[str, nn.Module], points: int, seed: int, source: nn.Module | None = None
    ) -> None:
        self.model, self.source = model, source or model
        self.layers, self.points, self.seed = layers, points, seed
        self.rows: dict[str, dict[str, torch.Tensor]] = {name: {} for name in layers}
        self.needs = {id(self.model): [(n, "y") for n in layers]}
        self.needs[id(self.source)] = self.needs.get(id(self.source), []) + [(n, "x") for n in layers]
        self.batch_no = 0
        self.handles: list = []

    def __enter__(self) -> _RowCapture:
        src_layers = dict(self.source.named_modules())
        same = self.source is self.model
        for name, layer in self.layers.items():
            keys = ("x", "y") if same else ("y",)
            self.handles.append(layer.register_forward_hook(self._hook(self.model, name, keys)))
            if not same:
                self.handles.append(src_layers[name].register_forward_hook(self._hook(self.source, name, ("x",))))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _hook(self, net: nn.Module, name: str, keys: tuple[str, ...]):
        layer = self.layers[name]

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            # the same seed in both passes of a batch: X and Y rows come from the same positions
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.batch_no)
            pick = sampled_positions(layer, output, self.points, generator)
            if "x" in keys:
                self.rows[name]["x"] = input_rows(layer, inputs[0], pick).float().cpu()
            if "y" in keys:
                self.rows[name]["y"] = output_rows(layer, output, pick).float().cpu()
            if all(k in self.rows[n] for n, k in self.needs[id(net)]):
                raise _AllCaptured

        return hook

    def begin(self, batch_no: int) -> None:
        self.batch_no = batch_no
        for entry in self.rows.values():
            entry.clear()

    def run(self, net: nn.Module, forward: Callable[[], object]) -> None:
        """``forward()`` runs ``net`` on this batch; it is stopped once ``net`` has given every row asked of it."""
        with contextlib.suppress(_AllCaptured):
            forward()
        missing = [n for n, k in self.needs[id(net)] if k not in self.rows[n]]
        if missing:
            raise ConfigError(
                f"the forward pass never reached {missing[0]}: a layer the model defines but does not use"
            )

    def accumulate(self, stats: dict[str, ConsumerStats]) -> None:
        """Add this batch's XᵀX and XᵀY (float32 products, float64 sums) to ``stats``."""
        for name, layer in self.layers.items():
            xs, ys = self.rows[name]["x"], self.rows[name]["y"]
            gram, cross = (xs.T @ xs).double(), (xs.T @ ys).double()
            if name not in stats:
                stats[name] = ConsumerStats(gram, cross, kernel_area(layer), len(xs))
            else:
                s = stats[name]
                s.gram += gram
                s.cross += cross
                s.rows += len(xs)


@torch.inference_mode()
def collect_stats(
    model: nn.Module,
    layers: dict[str, nn.Module],
    images: torch.Tensor,
    points: int,
    seed: int,
    batch_size: int = 250,
    source: nn.Module | None = None,
) -> dict[str, ConsumerStats]:
    """Accumulate XᵀX and XᵀY for each named consumer over the calibration images.

    X is read from ``source`` (default: ``model``), Y from ``model`` — so ``source`` = the pruned
    network gives the closed-loop problem, and the default the open-loop one. Each forward pass
    stops at the last layer it is needed for (closed loop refits early layers on a short prefix).
    """
    source = source or model
    model.eval()
    source.eval()
    device = next(model.parameters()).device
    stats: dict[str, ConsumerStats] = {}
    with _RowCapture(model, layers, points, seed, source) as capture:
        for batch_no, x in enumerate(_batches(images, batch_size)):
            x = x.to(device)
            capture.begin(batch_no)
            capture.run(model, lambda x=x: model(x))
            if source is not model:
                capture.run(source, lambda x=x: source(x))
            capture.accumulate(stats)
    return stats


def consumer_layers(model: nn.Module, structure: PrunableStructure) -> dict[str, nn.Module]:
    """Every dense layer that reads a decision point's channels, in forward order."""
    modules = dict(model.named_modules())
    names = {name for p in structure.points for name in p.consumers}
    order = structure.execution_order
    return {n: modules[n] for n in sorted(names, key=lambda n: order.get(n, 1 << 30))}


def input_keep(structure: PrunableStructure, keep: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """For each consumer whose input loses channels: the input positions that stay."""
    consumers = {n for p in structure.points for n in p.consumers}
    return {
        name: idx
        for (key, dim), idx in kept_positions(structure, keep).items()
        if dim == 1 and (name := key.rsplit(".", 1)[0]) in consumers and key.endswith(".weight")
    }


def _solvable(layer: nn.Module, max_columns: int) -> str | None:
    """Why least squares leaves ``layer`` sliced, or ``None`` if it refits it."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return "grouped conv"
    columns = layer.weight.shape[1] * kernel_area(layer)
    if columns > max_columns:
        return f"{columns} input columns > lsq_max_columns={max_columns}"
    return None


SOLVED_MEMORY_MB = 64  # FMNIST-MBV1's largest consumer weight is 4 MiB


class _BoundedStore:
    """Least recently used tensors by key, at most ``budget_bytes`` of them."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes, self.held_bytes = budget_bytes, 0
        self.entries: OrderedDict[object, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: object) -> torch.Tensor | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return value

    def put(self, key: object, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.budget_bytes:
            return
        while self.held_bytes + size > self.budget_bytes:
            _, old = self.entries.popitem(last=False)
            self.held_bytes -= old.numel() * old.element_size()
        self.entries[key] = value
        self.held_bytes += size


class OpenLoopReconstructor:
    """AMC's reconstruction with the calibration statistics computed once for a whole search.

    Every dense consumer of a decision point is refit on its own output, so a residual stream with four
    readers gets four solves. A consumer too large for its XᵀX (``max_columns``) stays sliced; ``skipped``
    says which.
    """

    def __init__(
        self,
        model: nn.Module,
        structure: PrunableStructure,
        images: torch.Tensor,
        points_per_image: int = 10,
        seed: int = 0,
        batch_size: int = 250,
        max_columns: int = DEFAULT_MAX_COLUMNS,
        more_images: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        """:param more_images: ``count`` → that many calibration images; consumers the ``images`` leave
        underdetermined (fewer than ``MIN_ROWS_PER_COLUMN`` rows per column) are refit on enough of them."""
        layers = consumer_layers(model, structure)
        self.skipped = {n: why for n, m in layers.items() if (why := _solvable(m, max_columns))}
        self.consumers = {n: m for n, m in layers.items() if n not in self.skipped}
        self.stats = collect_stats(model, self.consumers, images, points_per_image, seed, batch_size)
        self.structure = structure
        # A consumer's open-loop solve depends only on its kept inputs, and a search keeps proposing the same
        # counts for most layers (a prefix of a fixed ranking): solved weights are reused, not solved again.
        self.solved = _BoundedStore(SOLVED_MEMORY_MB * 2**20)
        thin = {n: images_for_rows(s, len(images)) for n, s in self.stats.items() if not well_posed(s)}
        if thin and more_images is not None:
            extra = more_images(max(thin.values()))
            more = {n: self.consumers[n] for n in thin}
            self.stats.update(collect_stats(model, more, extra, points_per_image, seed, batch_size))

    def overrides(self, keep: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reconstructed full-width consumer weights for the kept channels of every decision point.

        The returned tensors may be handed out again for the same kept channels: callers must not change them
        (slicing copies them).
        """
        out = {}
        for name, idx in input_keep(self.structure, keep).items():
            layer = self.consumers.get(name)
            if layer is None or len(idx) == layer.weight.shape[1]:
                continue
            key = (name, idx.to(torch.long).cpu().numpy().tobytes())
            weight = self.solved.get(key)
            if weight is None:
                weight = full_width_weight(layer, idx, solve(self.stats[name], idx))
                self.solved.put(key, weight)
            out[name] = weight
        return out


# Closed loop keeps both networks' calibration activations at the last cut reached, so each consumer's refit runs
# only the stages since then: FMNIST-MBV1's 14 refits went from ≈ 146 s to ≈ 50 s (experiments/notes/lab-notebook.md).
CLOSED_LOOP_MEMORY_MB = 256


def closed_loop_overrides(
    model: nn.Module,
    structure: PrunableStructure,
    keep: Sequence[torch.Tensor],
    images: torch.Tensor,
    points_per_image: int = 10,
    seed: int = 0,
    batch_size: int = 250,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    memory_mb: float = CLOSED_LOOP_MEMORY_MB,
) -> dict[str, torch.Tensor]:
    """Reconstruct consumers one at a time in forward order, X taken from the network pruned so far.

    The network pruned so far is a copy of ``model`` whose consumers read zeros for the dropped channels (as the
    sliced network reads nothing), refit one by one. Where the forward traces into stages, the walk from one
    consumer to the next starts from stored activations of both networks (``memory_mb`` for both together);
    otherwise every refit runs both networks from the input. Both give the same weights.
    """
    model.eval()
    work = copy.deepcopy(model)
    work_modules = dict(work.named_modules())
    layers = consumer_layers(model, structure)
    kept = input_keep(structure, keep)
    dropping = {n: kept[n] for n, layer in layers.items() if n in kept and len(kept[n]) < layer.weight.shape[1]}
    with torch.no_grad():
        for name, idx in dropping.items():
            if not _grouped(layers[name]):  # the sliced network reads nothing from the dropped channels
                _zero_inputs(work_modules[name].weight, idx)
    refit = [n for n in layers if n in dropping and not _solvable(layers[n], max_columns)]
    walk = _StagedWalk.for_consumers(model, work, structure, refit, images, batch_size, memory_mb)
    out = {}
    # the export's longest silent step otherwise (≈ 50 s on FMNIST-MBV1, far more on ImageNet-sized inputs)
    bar = tqdm(refit, desc="closed-loop least squares (layers)", leave=False, dynamic_ncols=True, disable=not refit)
    for i, name in enumerate(bar):
        layer = layers[name]
        if walk is not None:
            stats = walk.collect(name, layer, points_per_image, seed)
        else:
            stats = collect_stats(model, {name: layer}, images, points_per_image, seed, batch_size, source=work)[name]
        w = full_width_weight(layer, dropping[name], solve(stats, dropping[name]))
        with torch.no_grad():
            work_modules[name].weight.copy_(w.to(work_modules[name].weight.device))
        out[name] = w
        if walk is not None and i + 1 < len(refit):
            walk.advance(before=refit[i + 1])
    return out


def _grouped(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups != 1


def _zero_inputs(weight: torch.Tensor, idx: torch.Tensor) -> None:
    mask = torch.zeros(weight.shape[1], dtype=torch.bool, device=weight.device)
    mask[idx.to(weight.device)] = True
    weight[:, ~mask] = 0


class _StagedWalk:
    """The calibration images' activations in the base and in the network pruned so far, at the deepest cut of the
    staged forward reached so far, batch by batch: each refit runs from there, not from the input.

    Bit-identical to running each network from the input: the same batches through the same modules in the
    same order. A cut whose activations (both networks) exceed ``memory_bytes`` is not stored; the walk then
    keeps starting from the last one that fit.
    """

    def __init__(
        self,
        staged: StagedForward,
        model: nn.Module,
        work: nn.Module,
        images: torch.Tensor,
        batch_size: int,
        memory_bytes: int,
        node_of: dict[str, int],
    ) -> None:
        self.staged, self.model, self.work, self.node_of = staged, model, work, node_of
        self.bound = {id(model): staged.bind(model), id(work): staged.bind(work)}
        self.device = next(model.parameters()).device
        self.base = list(_batches(images, batch_size))  # views of the images until the first cut: no copy
        self.pruned = list(self.base)
        self.stage = 0  # the stored values enter stage ``stage`` (0: they are the images)
        with torch.inference_mode():
            probe, self.cut_bytes = images[:1].to(self.device), []
            for k in range(len(staged.cuts)):
                probe = staged.run(model, probe, k, k, self.bound[id(model)])
                self.cut_bytes.append(2 * probe.numel() * probe.element_size() * len(images))
        self.memory_bytes = memory_bytes

    @classmethod
    def for_consumers(
        cls,
        model: nn.Module,
        work: nn.Module,
        structure: PrunableStructure,
        consumers: list[str],
        images: torch.Tensor,
        batch_size: int,
        memory_mb: float,
    ) -> _StagedWalk | None:
        """A walk for these consumers, or ``None`` where it cannot help or cannot tell where they run (forward not
        traceable, a consumer called more or less than once, no budget)."""
        if memory_mb <= 0 or len(consumers) < 2:
            return None
        staged = staged_forward(model, structure, fuse=False)  # hooks see every module call
        if staged is None or not staged.cuts:
            return None
        calls = Counter(str(n.target) for n in staged.nodes if n.op == "call_module")
        if any(calls[name] != 1 for name in consumers):
            return None
        node_of = {str(n.target): i for i, n in enumerate(staged.nodes) if n.op == "call_module"}
        return cls(staged, model, work, images, batch_size, int(memory_mb * 2**20), node_of)

    def _run(self, net: nn.Module, h: torch.Tensor, stop: int | None) -> torch.Tensor:
        return self.staged.run(net, h.to(self.device), self.stage, stop, self.bound[id(net)])

    def _stop(self, name: str) -> int | None:
        """The first cut at or after ``name``'s call (``None``: the output)."""
        return next((k for k, cut in enumerate(self.staged.cuts) if cut >= self.node_of[name]), None)

    @torch.inference_mode()
    def collect(self, name: str, layer: nn.Module, points: int, seed: int) -> ConsumerStats:
        """``name``'s closed-loop XᵀX and XᵀY: Y from the base, X from the network pruned so far."""
        stop = self._stop(name)
        stats: dict[str, ConsumerStats] = {}
        with _RowCapture(self.model, {name: layer}, points, seed, source=self.work) as capture:
            for batch_no, (h_base, h_pruned) in enumerate(zip(self.base, self.pruned, strict=True)):
                capture.begin(batch_no)
                for net, h in ((self.model, h_base), (self.work, h_pruned)):
                    capture.run(net, lambda net=net, h=h: self._run(net, h, stop))
                capture.accumulate(stats)
        return stats[name]

    @torch.inference_mode()
    def advance(self, before: str) -> None:
        """Move the stored activations to the deepest cut that runs before consumer ``before`` and fits."""
        cuts = [k for k, cut in enumerate(self.staged.cuts) if k >= self.stage and cut < self.node_of[before]]
        target = next((k for k in reversed(cuts) if self.cut_bytes[k] <= self.memory_bytes), None)
        if target is None:
            return
        for values, net in ((self.base, self.model), (self.pruned, self.work)):
            for b, h in enumerate(values):  # in place: a batch's old activations are freed as it moves on
                values[b] = self._run(net, h, target)
        self.stage = target + 1


def unreconstructed(model: nn.Module, structure: PrunableStructure, max_columns: int = DEFAULT_MAX_COLUMNS) -> dict:
    """Consumers least squares leaves sliced, with the reason (for export summaries)."""
    return {n: why for n, m in consumer_layers(model, structure).items() if (why := _solvable(m, max_columns))}
