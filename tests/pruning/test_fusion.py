"""Conv + activation fused into one oneDNN kernel: found where it is safe, and bit-identical to eager PyTorch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from amc.pruning.fusion import can_fuse, fold_batchnorms
from amc.pruning.slicing import slice_model
from amc.pruning.staged_forward import StagedForward
from amc.pruning.structure import analyse
from tests.pruning.test_pruning import randomised

pytestmark = pytest.mark.skipif(not can_fuse(nn.Conv2d(1, 1, 1)), reason="no oneDNN on this build")
# oneDNN has bfloat16 kernels only on some CPUs (AVX512-BW/VL/DQ or AVX-NE-CONVERT); elsewhere nothing fuses in it
BFLOAT16 = pytest.param(
    torch.bfloat16,
    marks=pytest.mark.skipif(not can_fuse(nn.Conv2d(1, 1, 1).bfloat16()), reason="no oneDNN bfloat16 on this CPU"),
)


@pytest.fixture(autouse=True)
def _eager_runs_onednn_too():
    """Exactness holds where eager PyTorch runs oneDNN as well. ATen runs a single-threaded, stride-1 1x1 conv on
    fewer than 16 images with its own GEMM instead (`use_mkldnn` in ATen's ConvUtils), whose rounding differs by
    ~1e-7; these tests' batches are that small, so they run on 2 threads (the search scores 125 images a batch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    yield
    torch.set_num_threads(threads)


def pruned_folded(name: str, dtype: torch.dtype) -> tuple[nn.Module, StagedForward, tuple[int, ...]]:
    model, size = randomised(name)
    structure = analyse(model, size)
    keep = [torch.arange(0, w, 2) for w in structure.widths]  # every other channel
    net = fold_batchnorms(slice_model(model, structure, keep)).to(dtype, memory_format=torch.channels_last)
    return net, StagedForward(model, structure), size


@pytest.mark.parametrize("dtype", [torch.float32, BFLOAT16])
@pytest.mark.parametrize(("name", "activation"), [("mobilenet_v1", nn.ReLU), ("mobilenet_v2", nn.ReLU6)])
def test_fused_staged_forward_is_bit_identical_to_eager(name, activation, dtype):
    net, staged, size = pruned_folded(name, dtype)
    bound = staged.bind(net)
    # every activation of these models follows a conv and its (now folded) BN: all of them run fused
    assert len(bound.fused) == sum(isinstance(m, activation) for m in net.modules()) > 10
    # inputs large enough that ReLU6 clips (fusing it as a plain ReLU fails this test)
    x = (20 * torch.randn(4, *size[1:])).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = net(x)
        assert torch.equal(staged.run(net, x, 0, None, bound), expected)
        for k in range(len(staged.cuts)):  # and from every cut, as the prefix cache runs it
            h = staged.run(net, x, 0, k, bound)
            assert torch.equal(staged.run(net, h, k + 1, None, bound), expected)


def test_bfloat16_fuses_only_where_onednn_runs_it(monkeypatch):
    from amc.pruning import fusion

    conv = nn.Conv2d(4, 4, 1).bfloat16()
    monkeypatch.setattr(fusion, "_onednn_runs_bfloat16", lambda: False)  # an AVX2-only CPU: the fused op refuses
    assert not fusion.can_fuse(conv) and fusion.can_fuse(nn.Conv2d(4, 4, 1))
    monkeypatch.setattr(fusion, "_onednn_runs_bfloat16", lambda: True)
    assert fusion.can_fuse(conv)


def test_unfolded_batchnorm_keeps_the_eager_path():
    model, size = randomised("mobilenet_v1")
    staged = StagedForward(model, analyse(model, size))
    assert staged.chains and not staged.bind(model).fused  # BN between conv and ReLU: nothing to fuse
    x = torch.randn(2, *size[1:])
    with torch.inference_mode():
        assert torch.equal(staged.run(model, x, 0, None), model(x))


class Residual(nn.Module):
    """A functional activation after a folded conv (fusable), and a conv whose output is also read by an add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.branch(x)
        x = torch.relu(y + y.relu())  # y has two uses: conv and activation must stay apart
        return self.head(x.mean((2, 3)))


def test_functional_activation_fuses_and_a_shared_output_does_not():
    torch.manual_seed(0)
    model = Residual().eval()
    staged = StagedForward(model, analyse(model, (1, 3, 16, 16)))
    net = fold_batchnorms(copy.deepcopy(model))
    bound = staged.bind(net)
    assert [staged.nodes[i].target for i in bound.fused] == ["stem.0"]
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        assert torch.equal(staged.run(net, x, 0, None, bound), net(x))


@pytest.mark.parametrize("dtype", [torch.float32, BFLOAT16])
def test_a_scorer_scores_with_fused_kernels_exactly_as_eager_pytorch(dtype):
    from tests.strategy.test_prefix_cache import scorers

    plain, _ = scorers("mobilenet_v1", 0, dtype)
    assert plain.staged is not None and plain.prefix_cache is None
    channels = [max(1, w // 3) for w in plain.structure.widths]
    net = plain._prepare(plain.build(channels)[0])
    assert plain.staged.bind(net).fused  # the scorer's path does fuse
    with torch.inference_mode():
        batches = plain.val_images.split(plain.settings.batch_size)
        assert torch.equal(plain.logits(channels), torch.cat([net(b) for b in batches]))


@pytest.mark.parametrize(("name", "size"), [("resnet18", 64), ("mobilenet_v2", 64), ("efficientnet_b0", 64)])
def test_every_batchnorm_after_a_conv_folds_in_torchvision_networks(name, size):
    """Pairs come from the traced graph: ResNet's conv1/bn1 sit apart in its forward, not in an nn.Sequential."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    for m in model.modules():  # non-trivial statistics, so a wrong fold shows in the outputs
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    expected = {"resnet18": 20, "mobilenet_v2": 52, "efficientnet_b0": 49}[name]
    assert batchnorms == expected
    x = torch.randn(2, 3, size, size)
    folded = fold_batchnorms(copy.deepcopy(model))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0  # all of them
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
