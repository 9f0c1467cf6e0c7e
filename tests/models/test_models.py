"""The model registry, exact cost figures, and the checkpoint format."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from amc import models
from amc.pruning.counting import profile

# name, kwargs, input size, MACs (None = not pinned), params — figures from the reference's models.md
REFERENCE = [
    ("mobilenet_v1", {}, (1, 3, 224, 224), 568_740_352, 4_231_976),
    ("mobilenet_v1", {"profile": "0.5flops"}, (1, 3, 224, 224), 293_870_000, 2_408_232),
    ("mobilenet_v2", {}, (1, 3, 224, 224), 300_774_272, 3_504_872),
    ("mobilenet_v1", {"in_channels": 1, "num_classes": 10, "small_input": True}, (1, 1, 28, 28), 42_030_208, 3_216_650),
    ("hw7_student", {}, (1, 3, 256, 256), None, 256_779),
    ("hw7_student", {"width_mult": 0.95}, (1, 3, 256, 256), None, 236_066),
    ("hw7_student", {"width_mult": 0.7738}, (1, 3, 256, 256), None, 171_606),
    ("resnet18", {"num_classes": 11}, (1, 3, 224, 224), None, 11_182_155),
]


@pytest.mark.parametrize(("name", "kwargs", "size", "macs", "params"), REFERENCE)
def test_reference_figures(name, kwargs, size, macs, params):
    report = profile(models.create_model(name, **kwargs), input_size=size)
    assert report.params == params
    if macs is not None:
        assert report.macs == macs
    assert report.flops == 2 * report.macs


def counted_macs(model: nn.Module, size: tuple[int, ...]) -> int:
    """An independent count: torch's FlopCounterMode (conv, mm, addmm, bmm; FLOPs = 2 x MACs). It replaces
    fvcore, whose last release (2022) calls the deprecated torch.jit.script."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(size))
    return counter.get_total_flops() // 2


SMALL_INPUT = {
    "mobilenet_v1": (1, 3, 32, 32),
    "mobilenet_v2": (1, 3, 32, 32),
    "hw7_student": (1, 3, 64, 64),
    "resnet18": (1, 3, 64, 64),
}


@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_agrees_with_an_independent_counter(name):
    model = models.create_model(name, num_classes=10)
    size = SMALL_INPUT[name]
    report = profile(model, input_size=size)
    assert report.macs == counted_macs(model, size)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert sum(r.macs for r in report.layers) == report.macs


@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_forwards_and_every_parameter_learns(name):
    """The classes asked for come out, and the loss reaches every parameter: no layer is built and left unused."""
    # eval mode: in training mode a BN over 2 images at 1x1 px cancels any per-channel shift before it, so the
    # shifts (biases) upstream get no gradient for a reason that is BN's, not the model's
    model = models.create_model(name, num_classes=7).eval()
    out = model(torch.randn(2, 3, *SMALL_INPUT[name][2:]))
    assert out.shape == (2, 7)
    out.square().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused, unused


def test_mobilenet_v1_reference_layout_and_explicit_cfg():
    model = models.create_model("mobilenet_v1", cfg=[16, (32, 2)], in_planes=8, num_classes=3)
    keys = set(model.state_dict())
    assert {"conv1.0.weight", "features.0.0.weight", "features.1.3.weight", "classifier.0.bias"} <= keys
    assert model.features[1][0].stride == (2, 2)
    assert models.create_model("mobilenet_v1", width_mult=0.5).features[0][3].out_channels == 32


def test_unknown_model_and_bad_arguments_are_clear_errors():
    with pytest.raises(models.UnknownModelError, match="registered models"):
        models.create_model("no_such_model")
    with pytest.raises(models.ModelConfigError, match="profile"):
        models.create_model("mobilenet_v1", profile="tiny")


def test_checkpoint_round_trip_carries_architecture(tmp_path):
    model = models.create_model("mobilenet_v2", num_classes=10, width_mult=0.5).eval()
    path = models.save_checkpoint(model, tmp_path / "m.pt", note="hello")
    back = models.load_checkpoint(path).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), back(x))
    assert back.checkpoint_metadata["note"] == "hello"
    assert isinstance(torch.load(path, weights_only=True), dict)


def test_bare_state_dict_with_dataparallel_prefix(tmp_path):
    model = models.create_model("hw7_student").eval()
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "dp.pth")
    back = models.load_checkpoint(tmp_path / "dp.pth", name="hw7_student").eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), back(x))
    with pytest.raises(models.CheckpointError, match="without an architecture"):
        models.load_checkpoint(tmp_path / "dp.pth")


def test_mismatched_and_corrupt_checkpoints(tmp_path):
    models.save_checkpoint(models.create_model("hw7_student", width_mult=0.95), tmp_path / "s.pt")
    with pytest.raises(models.CheckpointError, match="shape mismatches"):
        models.load_checkpoint(tmp_path / "s.pt", width_mult=1.0)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(models.CheckpointError, match="not a readable"):
        models.load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(models.CheckpointError, match="not found"):
        models.load_checkpoint(tmp_path / "missing.pt")


def test_input_size_is_fitted_to_models_that_check_it_themselves():
    from torchvision.models import VisionTransformer

    from amc.errors import ConfigError
    from amc.networks import fit_input_size

    # torchvision's ViT checks its input size with torch._assert (an AssertionError, not a RuntimeError)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    assert fit_input_size(vit, 3, 8) == 32 and fit_input_size(vit, 3, 32) == 32
    assert vit.training  # put back as it was
    with pytest.raises(ConfigError, match=r"none of the input sizes .* at 8 px: AssertionError: Wrong image height"):
        fit_input_size(vit, 1, 8)  # one channel: conv_proj takes three at every size
