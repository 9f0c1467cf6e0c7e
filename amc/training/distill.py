"""Distillation losses: Hinton KD, FitNets-style feature hints, and plain cross-entropy.

All are callables ``loss(student_logits, labels, inputs[, teacher_logits]) -> scalar`` so the one training
loop (``amc.training.loop.fit``) runs them; the teacher runs in eval mode without gradients. Without augmentation
a teacher's logits are the same every epoch, so ``with_teacher_logits`` computes them once and the
training set carries them (``teacher_logits``), sparing the teacher's forward pass in every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from amc.choices import Distill
from amc.data import make_loader
from amc.errors import ConfigError

KINDS = tuple(Distill)


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(1 − α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))``, KL averaged over the batch.

    The T² keeps the soft term's gradients on the same scale for any T (Hinton et al., 2015).
    """
    ce = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    if alpha == 0:
        return ce
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - alpha) * ce + alpha * temperature**2 * soft


class FeatureTaps:
    """Forward hooks that keep the latest output of named layers."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ConfigError(f"hint layers not found in {type(model).__name__}: {missing}")
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(_m, _i, out):
            self.outputs[name] = out

        return hook


def stage_ends(model: nn.Module, input_size: Sequence[int]) -> dict[int, str]:
    """Per feature-map height: the module that finishes last with a 4-D output at that resolution."""
    ends: dict[int, str] = {}
    names = {m: n for n, m in model.named_modules() if n}

    def hook(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and module in names:
            ends[int(output.shape[2])] = names[module]

    handles = [m.register_forward_hook(hook) for m in names]
    param = next(model.parameters())
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_size), device=param.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return ends


def stage_hint_pairs(student: nn.Module, teacher: nn.Module, input_size: Sequence[int]) -> list[tuple[str, str]]:
    """FitNets hint pairs for any two networks: the end of each resolution stage both have, coarse last."""
    s_ends, t_ends = stage_ends(student, input_size), stage_ends(teacher, input_size)
    shared = sorted(set(s_ends) & set(t_ends), reverse=True)
    if not shared:
        raise ConfigError("student and teacher share no feature-map resolution; set distill.hint_layers")
    return [(s_ends[h], t_ends[h]) for h in shared]


class Distiller:
    """The fine-tuning loss against ``teacher``.

    :param kind: ``kd`` (Hinton), ``hint`` (KD plus FitNets hints on ``hint_layers``) or ``ce``.
    :param hint_layers: pairs ``(student_layer, teacher_layer)``; a learned 1×1 adapter maps the
        student's channels to the teacher's where they differ.
    """

    def __init__(
        self,
        teacher: nn.Module | None,
        kind: str = "kd",
        temperature: float = 4.0,
        alpha: float = 0.9,
        label_smoothing: float = 0.0,
        student: nn.Module | None = None,
        hint_layers: Sequence[Sequence[str]] | None = None,
        hint_weight: float = 1.0,
        input_size: Sequence[int] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown distillation {kind!r}; use one of {', '.join(KINDS)}")
        if kind != "ce" and teacher is None:
            raise ConfigError(f"distillation {kind!r} needs a teacher")
        self.teacher = teacher.eval() if teacher is not None else None
        self.kind, self.temperature, self.alpha = kind, temperature, alpha
        self.label_smoothing, self.hint_weight = label_smoothing, hint_weight
        self.adapters = nn.ModuleList()
        self.pairs: list[tuple[str, ...]] = []
        self.input_size = tuple(input_size) if input_size else None
        if kind == "hint":
            if student is None:
                raise ConfigError("hint distillation needs the student to tap its layers")
            self.input_size = self.input_size or (1, _in_channels(student), 32, 32)
            pairs = hint_layers or stage_hint_pairs(student, teacher, self.input_size)
            self.pairs = [tuple(p) for p in pairs]
            self.student_taps = FeatureTaps(student, [s for s, _ in self.pairs])
            self.teacher_taps = FeatureTaps(teacher, [t for _, t in self.pairs])
            self._build_adapters(student)

    def _build_adapters(self, student: nn.Module) -> None:
        """Probe one input to learn both sides' channel counts, then make a 1×1 adapter per pair."""
        param = next(student.parameters())
        probe = torch.zeros(self.input_size, device=param.device)
        was = student.training
        with torch.no_grad():
            student.eval()
            student(probe)
            self.teacher(probe.to(next(self.teacher.parameters()).device))
        student.train(was)
        for s_name, t_name in self.pairs:
            c_s = self.student_taps.outputs[s_name].shape[1]
            c_t = self.teacher_taps.outputs[t_name].shape[1]
            self.adapters.append(nn.Conv2d(c_s, c_t, 1, bias=False) if c_s != c_t else nn.Identity())
        self.adapters.to(param.device)

    def to(self, device: torch.device) -> Distiller:
        if self.teacher is not None:
            self.teacher.to(device)
        self.adapters.to(device)
        return self

    def parameters(self) -> list[nn.Parameter]:
        return list(self.adapters.parameters())

    def __call__(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        inputs: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.kind == "ce":
            return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if teacher_logits is None or self.pairs:  # hints need the teacher's features of this very batch
            with torch.no_grad():
                teacher_logits = self.teacher(inputs)
        if teacher_logits.shape != logits.shape:
            raise ConfigError(f"teacher outputs {tuple(teacher_logits.shape[1:])} classes, student {logits.shape[1]}")
        loss = kd_loss(logits, teacher_logits, labels, self.temperature, self.alpha, self.label_smoothing)
        for (s_name, t_name), adapter in zip(self.pairs, self.adapters, strict=True):
            s = adapter(self.student_taps.outputs[s_name])
            t = self.teacher_taps.outputs[t_name].detach()
            if s.shape[-2:] != t.shape[-2:]:
                t = F.adaptive_avg_pool2d(t, s.shape[-2:])
            loss = loss + self.hint_weight * F.mse_loss(s, t)
        return loss


def _in_channels(model: nn.Module) -> int:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


class WithTeacherLogits(Dataset):
    """``dataset`` with each sample's precomputed teacher logits: ``(x, y, teacher_logits)``."""

    def __init__(self, dataset: Dataset, logits: torch.Tensor) -> None:
        if len(dataset) != len(logits):
            raise ValueError(f"{len(logits)} teacher logits for {len(dataset)} samples")
        self.dataset, self.logits = dataset, logits

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        x, y = self.dataset[index]
        return x, y, self.logits[index]


@torch.inference_mode()
def with_teacher_logits(
    teacher: nn.Module,
    dataset: Dataset,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> WithTeacherLogits:
    """One teacher pass over a deterministic (non-augmented) dataset, kept on the CPU in dataset order."""
    teacher.eval()
    chunks = []
    loader = make_loader(dataset, batch_size, shuffle=False)
    for x, _ in tqdm(loader, desc="teacher logits", leave=False, dynamic_ncols=True):
        x = x.to(device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
        chunks.append(teacher(x).float().cpu())
    return WithTeacherLogits(dataset, torch.cat(chunks))
