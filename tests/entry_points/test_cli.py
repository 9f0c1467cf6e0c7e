"""Entry points as a user runs them: amc.train, amc.profile, amc.export, and their bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from amc import models
from tests.conftest import ROOT, assert_clean_error, refusal, run_module

pytestmark = pytest.mark.slow  # end-to-end runs of the entry points

TINY_MODEL = ["+model.kwargs.cfg=[16,[32,2],32]", "+model.kwargs.in_planes=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("train") / "run"
    proc = run_module(
        "amc.train",
        "data=digits",
        "logger=none",
        "train.epochs=3",
        "train.lr=0.05",
        "train.batch_size=32",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_train_writes_checkpoints_metrics_and_config(trained):
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.jsonl", "summary.json", "train_state.pt"):
        assert (trained / name).is_file(), name
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    model = models.load_checkpoint(trained / "best.pt")
    assert model.checkpoint_metadata["image_size"] == 8
    assert rows[-1]["search_val_top1"] > 20  # it learned something real (10 classes: chance is 10 %)


def test_train_resumes_from_its_run_dir(trained, tmp_path):
    run_dir = tmp_path / "resumable"
    args = ["data=digits", "logger=none", "train.lr=0.05", f"hydra.run.dir={run_dir}", *TINY_MODEL]
    assert run_module("amc.train", *args, "train.epochs=1").returncode == 0
    state = torch.load(run_dir / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    # a longer schedule continued from epoch 1, in the same run dir: the command line names only what changes,
    # everything else (data, model, lr) is the saved config's, not the entry point's defaults
    proc = run_module("amc.train", "train.epochs=2", "threads=1", f"resume={run_dir}")
    assert proc.returncode == 0 and "resuming train from epoch 1" in proc.stdout
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    original, resumed = (OmegaConf.load(run_dir / f) for f in ("config.yaml", "resume-config.yaml"))
    assert original.train.epochs == 1 and resumed.train.epochs == 2 and resumed.threads == 1
    # another learning rate or dataset would make one run of two experiments: refused, the run dir untouched
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    for change in ("train.lr=0.1", "data=fashion_mnist"):
        refused = run_module("amc.train", "train.epochs=3", change, f"resume={run_dir}")
        assert_clean_error(refused, f"{change.split('=')[0]}=", "would change what it computes")
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics
    assert resumed.data.name == "digits" and resumed.train.lr == 0.05 and resumed.model == original.model


def test_profile_prints_macs_and_params(trained):
    proc = run_module("amc.profile", "model=mobilenet_v2")
    assert proc.returncode == 0 and "300,774,272" in proc.stdout and "FLOPs = 2 x MACs" in proc.stdout
    proc = run_module("amc.profile", f"checkpoint={trained / 'best.pt'}")
    assert proc.returncode == 0 and "(1, 1, 8, 8)" in proc.stdout


def test_export_prunes_and_reconstructs_a_trained_model(trained, tmp_path):
    out = tmp_path / "pruned.pt"
    proc = run_module(
        "amc.export",
        f"checkpoint={trained / 'best.pt'}",
        "data=digits",
        "channels=[4,8,16,16]",
        "calibration_images=200",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "export_summary.json").read_text())
    assert summary["channels"] == [4, 8, 16, 16]
    pruned = models.load_checkpoint(out).eval()
    assert sum(p.numel() for p in pruned.parameters()) == summary["params"]
    from amc.data import build_data, stack_dataset
    from amc.training.evaluation import evaluate, tensor_batches

    x, y = stack_dataset(build_data("digits", search_val_size=300, augment=False).test)
    assert evaluate(pruned, tensor_batches(x, y, 100))["top1"] == pytest.approx(summary["reconstructed_test_top1"])
    # never overwrite what a user wrote
    again = run_module(
        "amc.export",
        f"checkpoint={trained / 'best.pt'}",
        "data=digits",
        "channels=[4,8,16,16]",
        "reconstruct=false",
        "evaluate=false",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run2'}",
    )
    assert_clean_error(again, "exists")


@pytest.mark.parametrize(
    ("module", "args", "fragment"),
    [
        ("amc.profile", ["model=no_such_model"], "no_such_model"),
        ("amc.train", ["model=no_such_model"], "no_such_model"),
        ("amc.train", ["data=food11", "data.root=/nonexistent/food-11"], "/nonexistent/food-11"),
        # a data.root without the files is an error, never a silent fall-back to Debian's copy
        ("amc.train", ["data.root=/nonexistent/fmnist"], "Fashion-MNIST not found"),
        ("amc.export", ["checkpoint=/nonexistent/base.pt"], "not found"),
        ("amc.export", ["checkpoint=BEST", "data=digits", "channels=[4,8]"], "decision points"),
        ("amc.export", ["checkpoint=BEST", "data=digits", "channels=[4,8,16,99]"], "cannot keep"),
        ("amc.export", ["checkpoint=MISMATCH", "data=digits", "channels=[4,8,16,16]"], "does not match"),
        # a digits checkpoint runs on Fashion-MNIST too (10 classes, 1 channel): its scores would mean nothing
        ("amc.export", ["checkpoint=BEST", "channels=[4,8,16,16]"], "trained on digits, not on fashion_mnist"),
        ("amc.search", ["checkpoint=BEST"], "trained on digits, not on fashion_mnist: pass data=digits"),
        ("amc.finetune", ["checkpoint=BEST"], "trained on digits, not on fashion_mnist"),
    ],
)
def test_bad_inputs_get_one_clear_line(module, args, fragment, trained, tmp_path):
    """Each job raises its user error before any long work; called here as the entry point calls it (the exit
    path itself, one subprocess: test_corrupt_checkpoint_is_a_clean_error)."""
    from amc.networks import builder_name
    from amc.strategy.checks import check_inputs
    from amc.strategy.export import export_strategy
    from amc.training.jobs import finetune_network, train_network

    jobs = {
        "profile": lambda settings, run_dir: builder_name(settings.model),
        "train": train_network,
        "export": export_strategy,
        "search": lambda settings, run_dir: check_inputs(settings),
        "finetune": finetune_network,
    }
    mismatch = tmp_path / "mismatch.pt"
    models.save_checkpoint(models.create_model("hw7_student"), mismatch)
    state = torch.load(mismatch, weights_only=True)
    state["arch"] = {"name": "mobilenet_v1", "kwargs": {"in_channels": 1, "num_classes": 10, "small_input": True}}
    torch.save(state, mismatch)
    args = [a.replace("BEST", str(trained / "best.pt")).replace("MISMATCH", str(mismatch)) for a in args]
    entry = module.removeprefix("amc.")
    quiet = ["logger=none"] if entry in ("train", "search", "finetune") else []  # the entries that track runs
    line = refusal(entry, *args, *quiet, check=lambda settings: jobs[entry](settings, tmp_path / "run"))
    assert fragment in line and "\n" not in line


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("amc.train", ["train.epochs=0"], "train.epochs must be ≥ 1, got 0"),
        ("amc.train", ["train.label_smoothing=1"], "train.label_smoothing must be in [0, 1), got 1"),
        ("amc.finetune", ["distill.temperature=0"], "distill.temperature must be > 0, got 0"),
        (
            "amc.finetune",
            ["train.batch_size=0", "seed=-1"],
            "seed must be ≥ 0, got -1; train.batch_size must be ≥ 1, got 0",
        ),
        ("amc.export", ["calibration_images=0"], "calibration_images must be ≥ 1, got 0"),
        ("amc.slim", ["factor=1.5"], "factor must be in (0, 1], got 1.5"),
        ("amc.quantize", ["calibration_images=-3"], "calibration_images must be ≥ 1, got -3"),
        ("amc.deploy", ["batch_sizes=[1,0]"], "batch_sizes must be ≥ 1, got [1, 0]"),
        ("amc.predict", ["max_bytes=0"], "max_bytes must be ≥ 1, got 0"),
        ("amc.pipeline", ["episodes=0"], "episodes must be ≥ 1, got 0"),
        ("amc.train", ["train.epochs=two"], "Value 'two' of type 'str' could not be converted to Integer"),
    ],
)
def test_every_entry_point_checks_numeric_ranges_first(module, args, message):
    """The settings refuse them as they are made, before a run dir holds anything (the exit path: below)."""
    line = refusal(module.removeprefix("amc."), *args)
    assert message in line and "\n" not in line


def test_a_refused_setting_exits_with_one_line_before_the_run_starts(tmp_path):
    proc = run_module("amc.deploy", "batch_sizes=[1,0]", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_error(proc, "batch_sizes must be ≥ 1, got [1, 0]")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize(
    ("entry", "override", "line"),
    [
        (
            "search",
            "model=resnet999",
            "In 'search': Could not find 'model/resnet999'. Available options in 'model': custom, hw7_student, "
            "mobilenet_v1, mobilenet_v1_tiny, mobilenet_v2, resnet18, torchvision",
        ),
        (
            "train",
            "no_such_key=1",
            "Could not override 'no_such_key'. To append to your config use +no_such_key=1 "
            "(Key 'no_such_key' not in 'TrainRunConfig')",
        ),
        ("finetune", "seed=[1", "no viable alternative at input '[1'"),
    ],
)
def test_overrides_hydra_refuses_get_one_line(entry, override, line):
    """Hydra's own report of a bad override is 4-12 lines; every other bad input gets one."""
    assert refusal(entry, override) == line


def test_a_bad_override_exits_with_one_line_before_the_run_starts(tmp_path):
    proc = run_module("amc.search", "flops_budget=abc", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: Error merging override flops_budget=abc (Value 'abc' of type 'str' could not be converted to Float)"
    ]
    assert not (tmp_path / "run").exists()


def test_hydra_full_error_still_shows_hydras_own_report(tmp_path):
    env_proc = subprocess.run(
        [sys.executable, "-m", "amc.train", "no_such_key=1", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert env_proc.returncode != 0
    assert "Traceback (most recent call last)" in env_proc.stderr  # the trace the user asked for
    assert "ConfigCompositionException: Could not override 'no_such_key'" in env_proc.stderr


def test_corrupt_checkpoint_is_a_clean_error(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"this is not a checkpoint")
    assert_clean_error(run_module("amc.profile", f"checkpoint={bad}"), "not a readable")


def test_search_without_its_data_stops_before_training_a_base(tmp_path):
    """Missing data is found before the base model trains (which takes minutes on the default)."""
    cache = tmp_path / "cache"
    proc = run_module(
        "amc.search",
        f"data.root={tmp_path / 'empty'}",
        f"cache_dir={cache}",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_clean_error(proc, "Fashion-MNIST not found", str(tmp_path / "empty"))
    assert "training a base" not in proc.stdout + proc.stderr
    assert not list(cache.glob("base_models/*"))
