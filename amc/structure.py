"""Where a network can be pruned: its decision points and the layers each one changes.

A **decision point** is one of AMC's steps: a set of channels whose count the agent chooses. It
names the layers whose *output* channels are those channels (``producers``, and ``passthrough``
depthwise convs and BNs that carry them unchanged) and the layers that *consume* them as input
channels (``consumers``; the single consumer is what least squares reconstructs). From these
declarations the engine derives, exactly and without a forward pass, the MACs and params of any
channel choice, and slices the weights of a physically smaller model of the same family.

Adding an architecture = writing one small ``*_structure`` function and registering it below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from amc.cost import profile


@dataclass(frozen=True)
class DecisionPoint:
    name: str
    channels: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    passthrough: tuple[str, ...] = ()
    gamma_bn: str | None = None  # the BN whose gamma ranks channels for ``bn_gamma`` selection

    @property
    def sliced_outputs(self) -> tuple[str, ...]:
        return self.producers + self.passthrough

    @property
    def reconstructed(self) -> str | None:
        return self.consumers[0] if len(self.consumers) == 1 else None


@dataclass(frozen=True)
class LayerCostTerm:
    """MACs of one Conv2d/Linear = ``spatial`` × out × in/groups, with out/in possibly set by decision points."""

    name: str
    spatial: int  # Ho·Wo·kh·kw (1 for Linear)
    out_channels: int
    in_per_group: int
    out_point: int | None
    in_point: int | None  # None for depthwise convs (in/groups stays 1)
    kind: str = "conv"  # conv | linear
    kernel_area: int = 1

    @property
    def feature_map(self) -> int:
        """Output positions Ho·Wo (1 for Linear)."""
        return self.spatial // self.kernel_area


@dataclass(frozen=True)
class ParamTerm:
    shape: tuple[int, ...]
    dim0_point: int | None
    dim1_point: int | None


@dataclass
class PrunableStructure:
    """The decision points of a model plus exact cost terms for any channel choice."""

    arch_name: str
    arch_kwargs: dict[str, Any]
    points: list[DecisionPoint]
    rebuild: Callable[[Sequence[int]], dict[str, Any]]
    input_size: tuple[int, ...]
    layer_terms: list[LayerCostTerm] = field(default_factory=list)
    param_terms: list[ParamTerm] = field(default_factory=list)

    @property
    def widths(self) -> list[int]:
        return [p.channels for p in self.points]

    def macs(self, channels: Sequence[int]) -> int:
        return sum(self.layer_macs(channels))

    def layer_macs(self, channels: Sequence[int]) -> list[int]:
        def pick(point: int | None, default: int) -> int:
            return default if point is None else int(channels[point])

        return [
            t.spatial * pick(t.out_point, t.out_channels) * pick(t.in_point, t.in_per_group) for t in self.layer_terms
        ]

    def params(self, channels: Sequence[int]) -> int:
        total = 0
        for t in self.param_terms:
            dims = list(t.shape)
            if t.dim0_point is not None:
                dims[0] = int(channels[t.dim0_point])
            if t.dim1_point is not None and len(dims) > 1:
                dims[1] = int(channels[t.dim1_point])
            n = 1
            for d in dims:
                n *= d
            total += n
        return total

    def new_arch_kwargs(self, channels: Sequence[int]) -> dict[str, Any]:
        return {**self.arch_kwargs, **self.rebuild([int(c) for c in channels])}


def _derive_costs(model: nn.Module, structure: PrunableStructure) -> None:
    """Fill the per-layer MAC terms and per-parameter terms from one profiling pass."""
    out_of: dict[str, int] = {}
    in_of: dict[str, int] = {}
    for i, p in enumerate(structure.points):
        for name in p.sliced_outputs:
            out_of[name] = i
        for name in p.consumers:
            in_of[name] = i
    modules = dict(model.named_modules())
    for row in profile(model, input_size=structure.input_size).layers:
        m = modules[row.name]
        if isinstance(m, nn.Conv2d):
            spatial = row.output_shape[2] * row.output_shape[3] * m.kernel_size[0] * m.kernel_size[1]
            depthwise = m.groups > 1 and m.groups == m.in_channels
            structure.layer_terms.append(
                LayerCostTerm(
                    row.name,
                    spatial,
                    m.out_channels,
                    m.in_channels // m.groups,
                    out_of.get(row.name),
                    None if depthwise else in_of.get(row.name),
                    "conv",
                    m.kernel_size[0] * m.kernel_size[1],
                )
            )
        else:
            structure.layer_terms.append(
                LayerCostTerm(
                    row.name, 1, m.out_features, m.in_features, out_of.get(row.name), in_of.get(row.name), "linear"
                )
            )
    for module_name, m in modules.items():
        for pname, param in m.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            structure.param_terms.append(
                ParamTerm(
                    tuple(param.shape), out_of.get(module_name), in_of.get(module_name) if pname == "weight" else None
                )
            )


# ---------------------------------------------------------------- declarations per family
def mobilenet_v1_structure(model: nn.Module) -> tuple[list[DecisionPoint], Callable]:
    blocks = model.features
    n = len(blocks)
    strides = [blocks[i][0].stride[0] for i in range(n)]
    points = [
        DecisionPoint(
            "conv1",
            model.conv1[0].out_channels,
            ("conv1.0", "conv1.1"),
            ("features.0.3",),
            ("features.0.0", "features.0.1"),
            "conv1.1",
        )
    ]
    for k in range(1, n + 1):
        prev = f"features.{k - 1}"
        last = k == n
        points.append(
            DecisionPoint(
                f"{prev}.3",
                blocks[k - 1][3].out_channels,
                (f"{prev}.3", f"{prev}.4"),
                ("classifier.0",) if last else (f"features.{k}.3",),
                () if last else (f"features.{k}.0", f"features.{k}.1"),
                f"{prev}.4",
            )
        )

    def rebuild(channels: Sequence[int]) -> dict[str, Any]:
        return {
            "profile": "normal",
            "width_mult": 1.0,
            "in_planes": channels[0],
            "cfg": [[c, s] for c, s in zip(channels[1:], strides, strict=True)],
        }

    return points, rebuild


def mobilenet_v2_structure(model: nn.Module) -> tuple[list[DecisionPoint], Callable]:
    blocks = list(model.features)[1:-1]
    hidden = [b.conv[-2][0].in_channels for b in blocks]
    expandable = [i for i, b in enumerate(blocks) if len(b.conv) == 3]
    points = []
    for i in expandable:
        pre = f"features.{i + 1}.conv"
        points.append(
            DecisionPoint(
                f"{pre}.0.0",
                hidden[i],
                (f"{pre}.0.0", f"{pre}.0.1"),
                (f"{pre}.2.0",),
                (f"{pre}.1.0", f"{pre}.1.1"),
                f"{pre}.0.1",
            )
        )

    def rebuild(channels: Sequence[int]) -> dict[str, Any]:
        new_hidden = list(hidden)
        for i, c in zip(expandable, channels, strict=True):
            new_hidden[i] = c
        return {"hidden_channels": new_hidden}

    return points, rebuild


def hw7_student_structure(model: nn.Module) -> tuple[list[DecisionPoint], Callable]:
    widths = [model.cnn[0][0].out_channels] + [model.cnn[i][3].out_channels for i in range(1, 8)]
    points = []
    for k in range(7):  # the last width feeds the fc and stays, as in the course
        producers = ("cnn.0.0", "cnn.0.1") if k == 0 else (f"cnn.{k}.3",)
        nxt = f"cnn.{k + 1}"
        points.append(
            DecisionPoint(producers[0], widths[k], producers, (f"{nxt}.3",), (f"{nxt}.0", f"{nxt}.1"), f"{nxt}.1")
        )

    def rebuild(channels: Sequence[int]) -> dict[str, Any]:
        return {"widths": [*channels, widths[7]]}

    return points, rebuild


def resnet18_structure(model: nn.Module) -> tuple[list[DecisionPoint], Callable]:
    names = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    modules = dict(model.named_modules())
    points = [
        DecisionPoint(
            f"{n}.conv1",
            modules[f"{n}.conv1"].out_channels,
            (f"{n}.conv1", f"{n}.bn1"),
            (f"{n}.conv2",),
            (),
            f"{n}.bn1",
        )
        for n in names
    ]
    return points, lambda channels: {"inner_widths": list(channels)}


STRUCTURES: dict[str, Callable[[nn.Module], tuple[list[DecisionPoint], Callable]]] = {
    "mobilenet_v1": mobilenet_v1_structure,
    "mobilenet_v2": mobilenet_v2_structure,
    "hw7_student": hw7_student_structure,
    "resnet18": resnet18_structure,
}


def analyse(model: nn.Module, input_size: tuple[int, ...]) -> PrunableStructure:
    """The prunable structure of a model built by ``models.create_model``."""
    arch = getattr(model, "arch", None)
    if arch is None or arch["name"] not in STRUCTURES:
        from amc.errors import ConfigError

        name = arch["name"] if arch else type(model).__name__
        raise ConfigError(f"no pruning structure for {name!r}; supported: {', '.join(STRUCTURES)}")
    points, rebuild = STRUCTURES[arch["name"]](model)
    structure = PrunableStructure(arch["name"], dict(arch["kwargs"]), points, rebuild, tuple(input_size))
    _derive_costs(model, structure)
    return structure
