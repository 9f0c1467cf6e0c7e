"""``amc.deploy``: ONNX export of a pruned network of any architecture agrees with PyTorch; latencies are measured."""

from __future__ import annotations

import json
import time

import pytest
import torch

from amc.deployment.onnx_export import export_onnx, max_difference, onnx_latency, onnx_session
from amc.models import create_model, save_checkpoint
from amc.pruning.apply import prune_model
from amc.pruning.structure import analyse
from amc.timing import paired_latency, paired_latency_ratio, torch_latency
from tests.conftest import refusal, run_ok


@pytest.mark.parametrize("name", ["torchvision.models.resnet18", "torchvision.models.mobilenet_v3_small"])
def test_onnx_of_a_pruned_torchvision_net_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    structure = analyse(model, (1, 3, 32, 32))
    pruned = prune_model(model, structure, [max(1, w // 2) for w in structure.widths], reconstruction="none").eval()
    assert export_onnx(pruned, torch.randn(1, 3, 32, 32), tmp_path / "out" / "m.onnx") == tmp_path / "out" / "m.onnx"
    moved = tmp_path / "moved"  # the files stand on their own: no scratch names recorded inside
    (tmp_path / "out").rename(moved)
    assert sorted(p.name for p in moved.iterdir()) in (["m.onnx"], ["m.onnx", "m.onnx.data"])
    session = onnx_session(moved / "m.onnx", threads=1)
    assert max_difference(session, pruned, torch.randn(7, 3, 32, 32)) < 1e-4  # a dynamic batch dimension
    rows = [
        torch_latency(pruned, torch.randn(2, 3, 32, 32), 1, 0.05),
        onnx_latency(session, torch.randn(2, 3, 32, 32), 1, 0.05),
    ]
    assert all(r.median_ms > 0 and r.runs >= 1 and r.batch == 2 for r in rows)


@pytest.mark.slow
def test_deploy_cli_compares_pruned_and_base(tmp_path):
    torch.manual_seed(0)
    base = create_model(
        "mobilenet_v1", cfg=[16, (32, 2), 32], in_planes=8, in_channels=1, num_classes=10, small_input=True
    )
    # trained on other data than deploy's default data=: latency on random inputs does not care
    base_path = save_checkpoint(base, tmp_path / "base.pt", data="digits", image_size=28)
    structure = analyse(base.eval(), (1, 1, 28, 28))
    pruned = prune_model(base, structure, [4, 8, 16, 16], reconstruction="none")
    pruned_path = save_checkpoint(pruned, tmp_path / "pruned.pt", image_size=28, base_checkpoint=str(base_path))
    run_dir = tmp_path / "run"
    proc = run_ok(
        f"amc.deploy checkpoint={pruned_path} batch_sizes=[1,8] threads=1 min_run_s=0.05 hydra.run.dir={run_dir}"
    )
    summary = json.loads((tmp_path / "run" / "deploy_summary.json").read_text())
    assert summary["model"]["max_abs_diff"] < 1e-4 and summary["base"]["max_abs_diff"] < 1e-4
    assert summary["ratios"]["macs"] == pytest.approx(structure.macs([4, 8, 16, 16]) / structure.macs(structure.widths))
    assert len(summary["model"]["latency"]) == 4 and (tmp_path / "run" / "model.onnx").is_file()
    assert "pruned / base:" in proc.stdout and summary["ratios"]["latency_pytorch_batch1_alternating_fastest"] > 0


def test_deploy_needs_a_checkpoint(tmp_path):
    """Refused before any work, called as the entry point calls the job (the exit path: tests/entry_points)."""
    from amc.deployment.jobs import deploy_report

    assert "checkpoint=PATH" in refusal("deploy", check=lambda settings: deploy_report(settings, tmp_path / "run"))


class Sleeps(torch.nn.Module):
    """A network whose forward takes at least ``ms``: a timing below it is wrong, far above it measures overhead."""

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms, self.conv = ms, torch.nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.ms / 1000)
        return self.conv(x)


def test_the_timers_measure_what_the_network_takes():
    x = torch.randn(1, 1, 4, 4)
    median = torch_latency(Sleeps(20), x, threads=1, min_run_s=0.1).median_ms
    assert 20 <= median < 60
    model_ms, base_ms = paired_latency(Sleeps(30), Sleeps(10), x, threads=1, min_run_s=0.1)
    assert 30 <= model_ms < 60 and 10 <= base_ms < 30
    assert 1.5 < paired_latency_ratio(Sleeps(30), Sleeps(10), x, threads=1, min_run_s=0.1) < 3.5
