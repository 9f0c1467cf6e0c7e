"""Where a network can be pruned: its decision points, found by tracing, and their exact cost.

A **decision point** is one of AMC's steps: a coupled channel group whose size the agent chooses. It
names the layers that *write* those channels (``producers``: dense Conv2d/Linear), the layers that
carry them unchanged (``passthrough``: BN, LayerNorm, depthwise convs, loose parameters such as
ConvNeXt's layer scale) and the dense layers that *read* them (``consumers``; least squares refits
each one). Residual adds couple several producers into one group; concatenations place a group at
an offset of its consumers' inputs. ``tensors`` says, for every state_dict tensor the group indexes,
which positions of which dimension carry which channel, so slicing and cost need no per-family code.

From these the structure derives, exactly and without a forward pass, the MACs and params of any
channel choice: every Conv2d/Linear's MACs are its output positions × its weight's size, and each
weight dimension shrinks linearly with the channels its groups drop.

Any model that torch-pruning's tracer can follow works; a group it cannot handle stays fixed, with
one warning line naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from amc.errors import ConfigError
from amc.pruning.counting import profile
from amc.pruning.tracing import RawGroup, TensorUse, trace_groups


@dataclass(frozen=True)
class DecisionPoint:
    """One channel group the agent sizes: the layers that write it, read it and carry it through."""

    name: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    channels: int
    passthrough: tuple[str, ...] = ()
    gamma_bn: str | None = None  # the BN whose gamma ranks channels for ``bn_gamma`` selection
    tensors: tuple[TensorUse, ...] = ()

    @property
    def residual(self) -> bool:
        """Several producers write these channels: a residual stream (their outputs meet at an add)."""
        return len(self.producers) > 1


@dataclass(frozen=True)
class SizeExpr:
    """A weight dimension as a function of the strategy: ``base − Σ mult·(width_p − channels_p)``."""

    base: int
    terms: tuple[tuple[int, int], ...] = ()  # (decision point, positions per channel)


@dataclass(frozen=True)
class LayerCostTerm:
    """MACs of one Conv2d/Linear = ``positions`` × kernel area × out × in/groups."""

    name: str
    kind: str  # conv | linear
    positions: int  # output positions: Ho·Wo (Linear: the product of its leading dims, usually 1)
    kernel_area: int
    out: SizeExpr
    inner: SizeExpr  # in / groups

    @property
    def feature_map(self) -> int:
        return self.positions

    @property
    def spatial(self) -> int:
        return self.positions * self.kernel_area

    @property
    def out_channels(self) -> int:
        return self.out.base

    @property
    def in_per_group(self) -> int:
        return self.inner.base

    @property
    def out_point(self) -> int | None:
        """The decision point setting the output width, when exactly one does."""
        return self.out.terms[0][0] if len(self.out.terms) == 1 else None

    @property
    def in_point(self) -> int | None:
        return self.inner.terms[0][0] if len(self.inner.terms) == 1 else None

    @property
    def points(self) -> set[int]:
        return {p for p, _ in self.out.terms + self.inner.terms}


class _Linear:
    """Vectorised ``size(c)`` for a list of SizeExprs (one numpy product per call: the wall calls it often)."""

    def __init__(self, exprs: Sequence[SizeExpr], n_points: int) -> None:
        self.base = np.array([e.base for e in exprs], dtype=np.int64)
        self.coef = np.zeros((len(exprs), n_points), dtype=np.int64)
        for row, e in enumerate(exprs):
            for p, m in e.terms:
                self.coef[row, p] += m

    def __call__(self, dropped: np.ndarray) -> np.ndarray:
        return self.base - self.coef @ dropped


@dataclass
class PrunableStructure:
    """The decision points of a model plus exact cost terms for any channel choice.

    :param arch: how the model was built (``{"name", "kwargs"}``, see ``models.create_model``); ``None``
        for a module built elsewhere (it can be pruned, not saved).
    :param fixed_groups: groups left out of the search, each with the reason.
    """

    arch: dict[str, Any] | None
    points: list[DecisionPoint]
    input_size: tuple[int, ...]
    layer_terms: list[LayerCostTerm] = field(default_factory=list)
    param_shapes: list[tuple[SizeExpr, ...]] = field(default_factory=list)
    fixed_groups: list[str] = field(default_factory=list)
    execution_order: dict[str, int] = field(default_factory=dict)
    prune_residual: bool = True

    @property
    def arch_name(self) -> str:
        return self.arch["name"] if self.arch else "model"

    @property
    def widths(self) -> list[int]:
        return [p.channels for p in self.points]

    def _dropped(self, channels: Sequence[int]) -> np.ndarray:
        return self._widths - np.asarray(channels, dtype=np.int64)

    def layer_macs(self, channels: Sequence[int]) -> list[int]:
        d = self._dropped(channels)
        return (self._spatial * self._out(d) * self._inner(d)).tolist()

    def macs(self, channels: Sequence[int]) -> int:
        d = self._dropped(channels)
        return int((self._spatial * self._out(d) * self._inner(d)).sum())

    def params(self, channels: Sequence[int]) -> int:
        d = self._dropped(channels)
        return int((self._param_fixed * self._dim_a(d) * self._dim_b(d)).sum())

    def finalise(self) -> None:
        """Build the vectorised cost functions (after points and terms are set)."""
        n = len(self.points)
        self._widths = np.array(self.widths, dtype=np.int64)
        self._spatial = np.array([t.spatial for t in self.layer_terms], dtype=np.int64)
        self._out = _Linear([t.out for t in self.layer_terms], n)
        self._inner = _Linear([t.inner for t in self.layer_terms], n)
        fixed, dim_a, dim_b = [], [], []
        for shape in self.param_shapes:
            varying = [e for e in shape if e.terms]
            prod = 1
            for e in shape:
                if not e.terms:
                    prod *= e.base
            if len(varying) > 2:
                raise ConfigError("a parameter has more than two pruned dimensions")
            varying += [SizeExpr(1)] * (2 - len(varying))
            fixed.append(prod)
            dim_a.append(varying[0])
            dim_b.append(varying[1])
        self._param_fixed = np.array(fixed, dtype=np.int64)
        self._dim_a, self._dim_b = _Linear(dim_a, n), _Linear(dim_b, n)

    def tensor_plan(self) -> dict[tuple[str, int], list[tuple[int, torch.Tensor, torch.Tensor]]]:
        """Per (state_dict key, dim): the (point, positions, channels) that index it — what slicing walks."""
        if not hasattr(self, "_plan"):
            plan: dict[tuple[str, int], list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
            for i, p in enumerate(self.points):
                for use in p.tensors:
                    entry = (i, torch.tensor(use.positions), torch.tensor(use.roots))
                    plan.setdefault((use.key, use.dim), []).append(entry)
            self._plan = plan
        return self._plan


def _group_point(raw: RawGroup, order: dict[str, int], modules: dict[str, nn.Module]) -> DecisionPoint:
    def by_order(names):
        return tuple(sorted(set(names), key=lambda n: order.get(n, 1 << 30)))

    producers = by_order(u.name for u in raw.modules if u.role == "out" and u.kind == "dense")
    consumers = by_order(u.name for u in raw.modules if u.role == "in" and u.kind == "dense")
    passthrough = by_order(u.name for u in raw.modules if u.kind in ("depthwise", "norm", "param"))
    gamma = next((n for n in passthrough if isinstance(modules.get(n), nn.modules.batchnorm._BatchNorm)), None)
    first = producers[0] if producers else raw.root
    return DecisionPoint(
        name=first,
        producers=producers,
        consumers=consumers,
        channels=raw.channels,
        passthrough=passthrough,
        gamma_bn=gamma,
        tensors=tuple(raw.tensors),
    )


def _call_order(model: nn.Module, input_size: tuple[int, ...]) -> tuple[dict[str, int], torch.Tensor]:
    order: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module, _inputs):
        order.setdefault(names[module], len(order))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    param = next(model.parameters(), None)
    x = torch.zeros(input_size, device=param.device if param is not None else "cpu")
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return order, out


def analyse(
    model: nn.Module,
    input_size: tuple[int, ...],
    prune_residual: bool = True,
    fixed: Sequence[str] = (),
) -> PrunableStructure:
    """The prunable structure of any traceable classification network.

    :param input_size: ``(1, C, H, W)`` the network is run at; costs are per image at this size.
    :param prune_residual: include groups coupled by residual adds (several producers); ``False`` keeps
        them fixed, as a within-block search.
    :param fixed: layers whose output channels stay fixed (e.g. HW7 keeps the width feeding the fc).
    """
    input_size = tuple(int(s) for s in input_size)
    try:
        order, output = _call_order(model, input_size)
    except RuntimeError as exc:
        raise ConfigError(
            f"{_model_label(model)} cannot run on input {input_size}: {str(exc).splitlines()[0]}"
        ) from None
    param = next(model.parameters())
    try:
        raw_groups = trace_groups(model, torch.zeros(input_size, device=param.device))
    except Exception as exc:  # the tracer's own limits (e.g. channel shuffles): nothing prunable, said once
        warnings.warn(
            f"{_model_label(model)}: the channel tracer failed ({type(exc).__name__}: {exc}); "
            "every channel stays fixed",
            stacklevel=2,
        )
        raw_groups = []
    modules = dict(model.named_modules())
    classes = output.shape[-1] if output.dim() >= 2 else None
    points: list[DecisionPoint] = []
    fixed_groups: list[str] = []
    fixed_set = set(fixed)
    for raw in raw_groups:
        point = _group_point(raw, order, modules)
        if not point.consumers and raw.channels == classes:
            continue  # the network's output (its class scores): never a decision
        if raw.problem:
            fixed_groups.append(f"{point.name} ({raw.channels} ch): {raw.problem}")
        elif not point.producers or not point.consumers:
            fixed_groups.append(f"{point.name} ({raw.channels} ch): reaches the output or has no dense producer")
        elif (not prune_residual and point.residual) or set(point.producers) & fixed_set:
            continue
        else:
            points.append(point)
    for line in fixed_groups:
        warnings.warn(f"{_model_label(model)}: channel group {line}; it stays fixed", stacklevel=2)
    points.sort(key=lambda p: order.get(p.producers[0], 1 << 30))
    arch = getattr(model, "arch", None)
    structure = PrunableStructure(
        dict(arch) if arch else None,
        points,
        input_size,
        fixed_groups=fixed_groups,
        execution_order=order,
        prune_residual=prune_residual,
    )
    _derive_costs(model, structure)
    structure.finalise()
    return structure


def _model_label(model: nn.Module) -> str:
    arch = getattr(model, "arch", None)
    return arch["name"] if arch else type(model).__name__


def _dim_exprs(shape: Sequence[int], key: str, plan: dict[tuple[str, int], list[tuple[int, int]]]) -> tuple:
    exprs = []
    for dim, size in enumerate(shape):
        exprs.append(SizeExpr(int(size), tuple(plan.get((key, dim), ()))))
    return tuple(exprs)


def _derive_costs(model: nn.Module, structure: PrunableStructure) -> None:
    """Fill the per-layer MAC terms and per-parameter shapes from one profiling pass."""
    plan: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for i, p in enumerate(structure.points):
        for use in p.tensors:
            plan.setdefault((use.key, use.dim), []).append((i, len(use.positions) // p.channels))
    modules = dict(model.named_modules())
    for row in profile(model, input_size=structure.input_size).layers:
        m = modules[row.name]
        key = f"{row.name}.weight" if row.name else "weight"
        out_e, in_e, *_ = _dim_exprs(m.weight.shape, key, plan)
        if isinstance(m, nn.Conv2d):
            positions = row.output_shape[2] * row.output_shape[3]
            area = m.kernel_size[0] * m.kernel_size[1]
            structure.layer_terms.append(LayerCostTerm(row.name, "conv", positions, area, out_e, in_e))
        else:
            positions = int(np.prod(row.output_shape[1:-1])) if len(row.output_shape) > 2 else 1
            structure.layer_terms.append(LayerCostTerm(row.name, "linear", positions, 1, out_e, in_e))
    for module_name, m in modules.items():
        for pname, param in m.named_parameters(recurse=False):
            if param.requires_grad:
                key = f"{module_name}.{pname}" if module_name else pname
                structure.param_shapes.append(_dim_exprs(param.shape, key, plan))
