"""Distillation losses: the definitions hold on real tensors and real gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from amc import models
from amc.errors import ConfigError
from amc.training.distill import Distiller, kd_loss, with_teacher_logits


def logits(seed: int, n: int = 16, c: int = 10) -> torch.Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed)) * 3


def test_alpha_zero_is_cross_entropy():
    s, t, y = logits(0), logits(1), torch.arange(16) % 10
    assert torch.allclose(kd_loss(s, t, y, 4.0, 0.0), F.cross_entropy(s, y))


def test_kd_term_vanishes_when_student_matches_teacher():
    s, y = logits(0), torch.arange(16) % 10
    pure_kd = kd_loss(s, s.clone(), y, 4.0, 1.0)
    assert pure_kd.abs() < 1e-6
    assert kd_loss(s, logits(1), y, 4.0, 1.0) > 0.01


def test_t_squared_keeps_gradient_magnitudes_comparable():
    y = torch.arange(16) % 10
    teacher = logits(1)
    norms = []
    for temperature in (2.0, 8.0, 32.0):
        s = logits(0).requires_grad_()
        kd_loss(s, teacher, y, temperature, 1.0).backward()
        norms.append(float(s.grad.norm()))
        # without T^2 the gradient shrinks like 1/T^2
    assert max(norms) / min(norms) < 4  # within a small factor; unscaled it would be (32/2)^2 = 256


def test_distiller_kinds_and_class_mismatch():
    teacher = models.create_model("hw7_student", num_classes=10).eval()
    student = models.create_model("hw7_student", width_mult=0.5, num_classes=10)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for kind in ("kd", "ce"):
        loss = Distiller(teacher, kind)(student(x), y, x)
        assert loss.ndim == 0 and torch.isfinite(loss)
    hint = Distiller(teacher, "hint", student=student, hint_layers=[("cnn.4.3", "cnn.4.3")])
    assert len(hint.parameters()) == 1  # widths differ (64 vs 128): one learned 1x1 adapter
    loss = hint(student(x), y, x)
    loss.backward()
    assert hint.parameters()[0].grad is not None
    other = models.create_model("hw7_student", num_classes=11).eval()
    with pytest.raises(ConfigError, match="classes"):
        Distiller(other, "kd")(student(x), y, x)
    with pytest.raises(ConfigError, match="unknown distillation"):
        Distiller(teacher, "fitnet++")


def test_cached_teacher_logits_give_the_same_loss_and_gradients():
    torch.manual_seed(0)
    teacher = models.create_model("mobilenet_v1", cfg=[16], in_planes=8, in_channels=1, num_classes=10).eval()
    student = models.create_model("mobilenet_v1", cfg=[8], in_planes=8, in_channels=1, num_classes=10)
    images = torch.randn(10, 1, 16, 16)
    dataset = torch.utils.data.TensorDataset(images, torch.arange(10) % 10)
    cached = with_teacher_logits(teacher, dataset, batch_size=4)
    x, y, t = cached[7]
    assert torch.equal(x, images[7]) and int(y) == 7
    with torch.no_grad():
        torch.testing.assert_close(t, teacher(images[7:8])[0])
    loss = Distiller(teacher, "kd", temperature=3.0, alpha=0.7)
    xs, ys, ts = torch.utils.data.default_collate([cached[i] for i in range(10)])
    grads = []
    for extra in ((), (ts,)):
        student.zero_grad()
        loss(student(xs), ys, xs, *extra).backward()
        grads.append(next(student.parameters()).grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.slow
def test_teacher_logit_cache_refuses_augmented_data(tmp_path):
    from amc.training.jobs import finetune_network
    from tests.conftest import refusal, run_module

    student = models.create_model("mobilenet_v1", cfg=[16], in_planes=8, in_channels=1, num_classes=10)
    models.save_checkpoint(student, tmp_path / "student.pt", base_checkpoint=str(tmp_path / "student.pt"))
    args = (f"checkpoint={tmp_path / 'student.pt'}", "data=digits", "logger=none", "train.epochs=1")
    cached = "cache_teacher_logits=true"
    refused = refusal("finetune", *args, cached, check=lambda settings: finetune_network(settings, tmp_path / "a"))
    assert "data.augment=false" in refused and "\n" not in refused
    proc = run_module("amc.finetune", *args, "data.augment=false", f"hydra.run.dir={tmp_path / 'b'}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert "teacher logits of" in proc.stdout and (tmp_path / "b" / "best.pt").is_file()
