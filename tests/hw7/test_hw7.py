"""HW7 end to end on a generated Food-11 folder: every part runs, and its definitions hold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from amc import models
from amc.hw7.quantization import decode, encode, load_quantized, save_quantized
from amc.hw7.slimming import slim_student
from tests.conftest import assert_clean_error, run_module

pytestmark = pytest.mark.slow  # end-to-end runs of the entry points

FAST = ["logger=none", "data.crop=64", "data.search_val_size=5", "train.epochs=1", "train.batch_size=8"]


@pytest.fixture(scope="module")
def food(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("food") / "food-11"
    gen = torch.Generator().manual_seed(0)
    for split in ("training", "validation", "testing"):
        (root / split).mkdir(parents=True)
        for label in range(11):
            for n in range(3):
                w, h = (200, 180) if n == 0 else (300, 280)
                pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy()
                name = f"{label * 3 + n}.jpg" if split == "testing" else f"{label}_{n}.jpg"
                Image.fromarray(pixels).save(root / split / name)
    return root


@pytest.fixture(scope="module")
def student(food, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("student")
    proc = run_module(
        "amc.train",
        "model=hw7_student",
        "data=food11",
        f"data.root={food}",
        *FAST,
        "train.optimizer=adamw",
        "train.lr=1e-3",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run / "best.pt"


def test_teacher_and_kd_parts_run(food, student, tmp_path):
    teacher_dir = tmp_path / "teacher"
    proc = run_module(
        "amc.train",
        "model=resnet18",
        "+model.kwargs.small_input=false",
        "data=food11",
        f"data.root={food}",
        *FAST,
        f"hydra.run.dir={teacher_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the course ships the teacher as a bare state_dict file
    bin_path = tmp_path / "teacher_resnet18.bin"
    torch.save(models.load_checkpoint(teacher_dir / "best.pt").state_dict(), bin_path)
    proc = run_module(
        "amc.train",
        "model=hw7_student",
        "data=food11",
        f"data.root={food}",
        *FAST,
        f"teacher={bin_path}",
        "distill.temperature=20",
        "distill.alpha=0.5",
        "train.optimizer=adamw",
        "train.lr=1e-3",
        f"hydra.run.dir={tmp_path / 'kd'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert models.load_checkpoint(tmp_path / "kd" / "best.pt").checkpoint_metadata["teacher"] == str(bin_path)


def test_slimming_at_width_one_is_a_permutation(student):
    model = models.load_checkpoint(student).eval()
    same = slim_student(model, 1.0, (1, 3, 64, 64)).eval()
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(same(x), model(x), atol=1e-5)
    smaller = slim_student(model, 0.95, (1, 3, 64, 64))
    assert sum(p.numel() for p in smaller.parameters()) == 236_066


def test_slimming_schedule_runs(food, student, tmp_path):
    proc = run_module(
        "amc.slim", f"checkpoint={student}", f"data.root={food}", *FAST, "steps=2", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "slimming.json").read_text())
    assert [r["params"] for r in rows] == [236_066, 217_850]


def test_uint8_round_trip_error_bound():
    torch.manual_seed(0)
    state = {"w": torch.randn(64, 32) * 3, "b": torch.randn(7), "n": torch.tensor(5), "c": torch.ones(4)}
    back = decode(encode(state, 8))
    for key in ("w", "b"):
        bound = (state[key].max() - state[key].min()) / 510
        assert (back[key] - state[key]).abs().max() <= bound + 1e-6
    assert torch.equal(back["n"], state["n"]) and torch.equal(back["c"], state["c"])
    assert torch.equal(decode(encode(state, 16))["w"], state["w"].half().float())


def test_file_sizes_and_the_300000_byte_limit(tmp_path):
    model = models.create_model("hw7_student")
    sizes = {bits: save_quantized(model, tmp_path / f"m{bits}.pt", bits) for bits in (32, 16, 8)}
    assert 0.48 < sizes[16] / sizes[32] < 0.52 and 0.24 < sizes[8] / sizes[32] < 0.28
    assert sizes[8] <= 300_000 < sizes[16]
    back = load_quantized(tmp_path / "m8.pt")
    assert sum(p.numel() for p in back.parameters()) == 256_779


def test_quantize_and_predict_parts(food, student, tmp_path):
    proc = run_module(
        "amc.quantize",
        f"checkpoint={student}",
        f"data.root={food}",
        "data.crop=64",
        "data.search_val_size=5",
        "calibration_images=16",
        f"hydra.run.dir={tmp_path / 'q'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "q" / "quantization.json").read_text())
    assert result["uint8"]["bytes"] < result["fp16"]["bytes"] < result["fp32"]["bytes"]
    assert result["int8_ptq"]["int8_latency_ms"] > 0
    out = tmp_path / "pred.csv"
    proc = run_module(
        "amc.predict",
        f"data.root={food}",
        f"model_file={tmp_path / 'q' / 'model_uint8.pt'}",
        f"output={out}",
        "crop=64",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["Id", "label"] and len(rows) == 34
    assert [int(r[0]) for r in rows[1:]] == list(range(33)) and all(0 <= int(r[1]) < 11 for r in rows[1:])
    too_big = run_module(
        "amc.predict",
        f"data.root={food}",
        f"model_file={tmp_path / 'q' / 'model_fp32.pt'}",
        f"output={tmp_path / 'p2.csv'}",
        "crop=64",
    )
    assert_clean_error(too_big, "300,000-byte limit")


def test_amc_on_the_student_with_a_params_budget(food, student, tmp_path):
    proc = run_module(
        "amc.search",
        "model=hw7_student",
        "data=food11",
        f"data.root={food}",
        "data.crop=64",
        "data.search_val_size=5",
        f"checkpoint={student}",
        "params_budget=0.6",
        "episodes=3",
        "agent.warmup_episodes=2",
        "calibration_images=16",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    strategy = json.loads((tmp_path / "strategy.json").read_text())
    assert strategy["params"] <= 0.6 * strategy["base_params"]
    pruned = models.load_checkpoint(tmp_path / "pruned.pt")
    assert save_quantized(pruned, tmp_path / "u8.pt", 8) <= 300_000
