"""``amc.pipeline`` end to end on the smoke preset, and ``amc.finetune`` errors."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from amc import models, pipeline
from amc.errors import ConfigError
from amc.reporting.leaderboard import find_runs
from tests.conftest import composed, refusal, run_module


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_reports(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    args = (
        "data_group=digits",
        "logger_group=none",
        "episodes=5",
        "finetune_epochs=1",
        f"extra_search_args=['experiment=smoke','cache_dir={cache}']",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    proc = run_module("amc.pipeline", *args, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = tmp_path / "run"
    for stage in ("amc", "uniform"):
        assert (run / stage / "strategy.json").is_file()
    for stage in ("amc_kd", "amc_ce", "uniform_kd"):
        summary = json.loads((run / stage / "summary.json").read_text())
        assert summary["last"]["epoch"] == 1 and "test" in summary["before"]
        model = models.load_checkpoint(run / stage / "best.pt")
        assert model.checkpoint_metadata["distill"] == stage.split("_")[1]
    report = (run / "report.md").read_text()
    assert "AMC + KD" in report and "uniform" in report and (run / "report.png").is_file()
    # the leaderboard reads the pipeline's own layout: each search's after-FT score is its KD stage's
    after = {r.method: r.test_after for r in find_runs([run])}
    kd = {
        stage: json.loads((run / stage / "summary.json").read_text())["last"]["test_top1"]
        for stage in ("amc_kd", "uniform_kd")
    }
    assert after == {"ddpg": kd["amc_kd"], "uniform": kd["uniform_kd"]}
    # the same command again continues it (every stage is done); another budget would mix two pipelines' stages
    again = run_module("amc.pipeline", *args)
    assert again.returncode == 0 and "== amc." not in again.stdout, again.stderr[-2000:]
    # the check the entry point makes before any stage runs, called directly (a refusal's exit path: the test below)
    other = composed("pipeline", *args[:-1], "flops_budget=0.3")
    monkeypatch.setattr(pipeline, "run_dir_of", lambda: run)
    with pytest.raises(
        ConfigError, match=r"holds a pipeline run with other settings: flops_budget=0.3 \(it ran with 0.5\)"
    ):
        pipeline.refuse_another_pipeline(other)
    assert (run / "report.md").read_text() == report
    assert OmegaConf.load(run / "config.yaml").flops_budget == 0.5


def test_finetune_bad_inputs(tmp_path):
    """Refused before any training, called as the entry point calls the job (its exit path: test_cli.py)."""
    from amc.training.jobs import finetune_network

    def refused(*args: str) -> str:
        return refusal("finetune", *args, "logger=none", check=lambda s: finetune_network(s, tmp_path / "run"))

    assert "not found" in refused("checkpoint=/nonexistent/pruned.pt")
    student = models.create_model(
        "mobilenet_v1", cfg=[16], in_planes=8, in_channels=1, num_classes=10, small_input=True
    )
    teacher = models.create_model("mobilenet_v1", cfg=[16], in_planes=8, in_channels=1, num_classes=7, small_input=True)
    models.save_checkpoint(teacher, tmp_path / "teacher.pt")
    models.save_checkpoint(student, tmp_path / "student.pt", image_size=8)
    line = refused(f"checkpoint={tmp_path / 'student.pt'}", f"teacher={tmp_path / 'teacher.pt'}", "data=digits")
    assert "classes" in line and "\n" not in line


@pytest.mark.slow  # the pipeline and its first stage, each a process
def test_a_bad_override_for_a_stage_is_one_line_from_the_stage(tmp_path):
    """A stage is a child process: it inherits the parent's switch to Hydra's raised errors, and still reports in one
    line (not as if the user had set HYDRA_FULL_ERROR=1)."""
    proc = run_module(
        "amc.pipeline",
        "extra_search_args=['experiment=smoke','no_such_key=1']",
        "data_group=digits",
        "logger_group=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: Could not override 'no_such_key'. To append to your config use +no_such_key=1 "
        "(Key 'no_such_key' not in 'SearchConfig')",
        f"error: stage amc.search failed (exit 2); its log is in {tmp_path / 'run' / 'amc'}",
    ]
