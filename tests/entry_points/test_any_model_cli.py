"""Models from anywhere through the CLI: a user's network imported by ``_target_``, and torchvision networks."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from amc import models
from amc.pruning.structure import analyse
from tests.conftest import assert_clean_error, refusal, run_module, run_ok

USER_NET = textwrap.dedent(
    """
    import torch.nn as nn


    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),
                nn.Conv2d(2 * c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
            )

        def forward(self, x):
            return (x + self.body(x)).relu()


    def build(num_classes=10, width=16):  # no in_channels: the first conv is adapted to the data
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), Residual(width),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            Residual(2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
        )
    """
)


@pytest.fixture
def user_code(tmp_path):
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "my_nets.py").write_text(USER_NET)
    return folder


@pytest.mark.slow
def test_user_model_trains_searches_exports_and_finetunes(tmp_path, user_code):
    common = "model=custom model._target_=my_nets.build +model.kwargs.width=16"
    train_dir = tmp_path / "train"
    run_ok(f"amc.train {common} data=digits logger=none train.epochs=2 hydra.run.dir={train_dir}", user_code)
    # A checkpoint naming a builder nobody named in this run is refused; named, it loads from the file the caller
    # names too (this process cannot import my_nets by name, and a file's stored path is never executed).
    with pytest.raises(models.UntrustedBuilderError):
        models.load_checkpoint(train_dir / "best.pt")
    trusted = {"trusted_builders": ["my_nets.build"], "builder_source": str(user_code / "my_nets.py")}
    base = models.load_checkpoint(train_dir / "best.pt", **trusted)
    assert base.arch["name"] == "my_nets.build" and base.arch["source_hint"] == "my_nets.py"
    assert str(user_code) not in str(torch.load(train_dir / "best.pt", weights_only=True)["arch"])  # no saver's path
    assert base.arch["kwargs"] == {"width": 16, "num_classes": 10, "in_channels": 1}
    assert base[0].in_channels == 1  # adapted to the 1-channel digits

    search_dir = tmp_path / "search"
    base_path = train_dir / "best.pt"
    run_ok(f"amc.search experiment=smoke {common} checkpoint={base_path} hydra.run.dir={search_dir}", user_code)
    strategy = json.loads((search_dir / "strategy.json").read_text())
    assert strategy["macs"] <= 0.5 * strategy["base_macs"]
    # the budget fill left nothing on the table: on this coarse grid (steps of 4 channels of 16-64) it may land a few
    # percent under 0.5, but no single step more fits
    structure = analyse(base.eval(), (1, 1, 8, 8))
    channels = strategy["channels"]
    assert structure.macs(channels) == strategy["macs"]
    for i, width in enumerate(structure.widths):
        if channels[i] + 4 <= width:
            grown = [c + 4 * (j == i) for j, c in enumerate(channels)]
            assert structure.macs(grown) > 0.5 * strategy["base_macs"]
    assert strategy["prune_residual"] is True and len(strategy["channels"]) == 4  # 2 inner + 2 residual streams
    pruned = models.load_checkpoint(search_dir / "pruned.pt", **trusted)
    assert sum(p.numel() for p in pruned.parameters()) == strategy["params"]

    export_dir = tmp_path / "export"
    strategy_path = search_dir / "strategy.json"
    run_ok(
        f"amc.export {common} data=digits checkpoint={base_path} strategy={strategy_path} calibration_images=100 "
        f"hydra.run.dir={export_dir}",
        user_code,
    )
    summary = json.loads((export_dir / "export_summary.json").read_text())
    assert summary["channels"] == strategy["channels"] and summary["macs"] == strategy["macs"]

    run_ok(
        f"amc.finetune {common} checkpoint={search_dir / 'pruned.pt'} data=digits distill=hint logger=none "
        "train.epochs=1 "
        f"hydra.run.dir={tmp_path / 'finetune'}",
        user_code,
    )


@pytest.mark.slow
def test_torchvision_model_searches_and_finetunes_with_hints(tmp_path):
    args = ["model=torchvision", "model.name=resnet18", "experiment=smoke", f"cache_dir={tmp_path / 'cache'}"]
    # what is tested is the path, not the accuracy: a few steps of training, three episodes, and the weights sliced
    # without the least-squares refit (ResNet-18's refit: tests/strategy/test_prefix_cache.py, test_closed_loop.py)
    args += ["base_training.epochs=1", "base_training.max_steps_per_epoch=4", "episodes=3", "agent.warmup_episodes=2"]
    args += ["reconstruct=false", "selection=l1", "score=plain"]
    proc = run_module("amc.search", *args, "flops_budget=0.5", f"hydra.run.dir={tmp_path / 'search'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    strategy = json.loads((tmp_path / "search" / "strategy.json").read_text())
    assert 0.49 <= strategy["macs"] / strategy["base_macs"] <= 0.5
    assert sum(1 for n in strategy["decision_points"] if n.endswith("conv1")) >= 8
    pruned = models.load_checkpoint(tmp_path / "search" / "pruned.pt")
    assert pruned.arch["name"] == "torchvision.models.resnet18" and "pruning" in pruned.arch
    x = torch.randn(2, 1, 8, 8)
    assert pruned.eval()(x).shape == (2, 10)
    proc = run_module(
        "amc.finetune",
        f"checkpoint={tmp_path / 'search' / 'pruned.pt'}",
        "data=digits",
        "distill=hint",
        "logger=none",
        "train.epochs=1",
        "train.max_steps_per_epoch=4",
        f"hydra.run.dir={tmp_path / 'finetune'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unknown_models_are_one_line_errors(tmp_path):
    """Refused before any training, called as the entry points call their jobs (the exit path: test_cli.py)."""
    from amc.strategy.checks import check_inputs
    from amc.training.jobs import train_network

    search = refusal("search", "model=torchvision", "model.name=resnet_nine", "logger=none", check=check_inputs)
    assert "unknown torchvision classification model 'resnet_nine'" in search
    assert "model=custom needs model._target_" in refusal("search", "model=custom", "logger=none", check=check_inputs)
    train = refusal(
        "train", "model=custom", "model._target_=no_such_pkg.build", "logger=none",
        check=lambda settings: train_network(settings, tmp_path / "run"),
    )  # fmt: skip
    assert "unknown model 'no_such_pkg.build'" in train


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["LayerNormBlocks", "ConvNeXtBlocks", "ParallelInput", "ManualAttention"])
def test_zoo_kinds_search_and_export_exactly_or_are_refused_in_one_line(tmp_path, kind):
    """No search of these kinds ends in a traceback: the exported MACs recount exactly, or one error line."""
    from torch.utils.flop_counter import FlopCounterMode

    args = ["experiment=smoke", "model=custom", f"model._target_=tests.fixtures.zoo_kinds.{kind}"]
    proc = run_module("amc.search", *args, f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}")
    if kind == "ManualAttention":
        assert_clean_error(proc, "FlopCounterMode counts")
        assert not (tmp_path / "cache" / "base_models").exists()  # refused before any training
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    strategy = json.loads((tmp_path / "run" / "strategy.json").read_text())
    pruned = models.load_checkpoint(tmp_path / "run" / "pruned.pt", trusted_builders=[args[2].split("=")[1]])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        pruned.eval()(torch.zeros(1, 1, 8, 8))
    assert counter.get_total_flops() // 2 == strategy["macs"] <= 0.5 * strategy["base_macs"]
