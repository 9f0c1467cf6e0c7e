"""Regression rows of each consumer layer: X from the network being refit, Y from the original, sampled at random
output positions of calibration images and summed into ``XᵀX`` and ``XᵀY``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from amc.errors import ConfigError
from amc.pruning.structure import PrunableStructure

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


def batches(images: torch.Tensor, batch_size: int):
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


class AllCaptured(Exception):
    """Raised by a forward hook once a pass has given every tensor it was run for: skips the rest of it."""


class RowCapture:
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

    def __enter__(self) -> RowCapture:
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
                raise AllCaptured

        return hook

    def begin(self, batch_no: int) -> None:
        self.batch_no = batch_no
        for entry in self.rows.values():
            entry.clear()

    def run(self, net: nn.Module, forward: Callable[[], object]) -> None:
        """``forward()`` runs ``net`` on this batch; it is stopped once ``net`` has given every row asked of it."""
        with contextlib.suppress(AllCaptured):
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
    with RowCapture(model, layers, points, seed, source) as capture:
        for batch_no, x in enumerate(batches(images, batch_size)):
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
