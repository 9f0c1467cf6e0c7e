"""Distillation losses: Hinton KD, FitNets-style feature hints, and plain cross-entropy.

All are callables ``loss(student_logits, labels, inputs[, teacher_logits]) -> scalar`` so the one training
loop (``amc.training.fit``) runs them; the teacher runs in eval mode without gradients. Without augmentation
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

from amc.data import make_loader
from amc.errors import ConfigError

KINDS = ("kd", "hint", "ce")


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
        hint_layers: Sequence[Sequence[str]] = (),
        hint_weight: float = 1.0,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown distillation {kind!r}; use one of {', '.join(KINDS)}")
        if kind != "ce" and teacher is None:
            raise ConfigError(f"distillation {kind!r} needs a teacher")
        self.teacher = teacher.eval() if teacher is not None else None
        self.kind, self.temperature, self.alpha = kind, temperature, alpha
        self.label_smoothing, self.hint_weight = label_smoothing, hint_weight
        self.adapters = nn.ModuleList()
        self.pairs = [tuple(p) for p in hint_layers] if kind == "hint" else []
        if self.pairs:
            if student is None:
                raise ConfigError("hint distillation needs the student to tap its layers")
            self.student_taps = FeatureTaps(student, [s for s, _ in self.pairs])
            self.teacher_taps = FeatureTaps(teacher, [t for _, t in self.pairs])
            self._build_adapters(student)

    def _build_adapters(self, student: nn.Module) -> None:
        """Probe one input to learn both sides' channel counts, then make a 1×1 adapter per pair."""
        param = next(student.parameters())
        conv = next(m for m in student.modules() if isinstance(m, nn.Conv2d))
        probe = torch.zeros(1, conv.in_channels, 32, 32, device=param.device)
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
