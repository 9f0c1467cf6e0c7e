"""The Python API on users' own models, metrics, data and training loops (docs/python-api.md)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import amc
from tests.conftest import ROOT


class Classifier(nn.Module):
    """A user's own classifier: plain attributes, not amc's zoo."""

    def __init__(self, width: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU()
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean((2, 3)))


class EncoderDecoder(nn.Module):
    """Not a classifier: per-pixel output, as a segmenter or a denoiser has."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()
        )
        self.decode = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@pytest.fixture
def classifier() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = Classifier().eval()
    inputs = torch.randn(128, 3, 12, 12)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    return model, torch.randn(1, 3, 12, 12), inputs, labels


def agreement_with(model: nn.Module, inputs: torch.Tensor):
    with torch.no_grad():
        target = model(inputs).argmax(1)

    def evaluate(candidate: nn.Module) -> float:
        with torch.no_grad():
            return (candidate(inputs).argmax(1) == target).float().mean().item()

    return evaluate


def test_compress_meets_the_budget_with_the_users_metric_and_leaves_the_model_alone(classifier):
    model, example, inputs, _ = classifier
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    metric = agreement_with(model, inputs)
    result = amc.compress(
        model, example, budget=amc.Budget(flops=0.5), evaluate=lambda m: calls.append(1) or metric(m),
        calibration=inputs, method="random", evaluations=5, seed=0,
    )  # fmt: skip
    assert result.macs <= 0.5 * result.base_macs and result.macs == amc.profile(result.model, example).macs
    assert result.params == amc.profile(result.model, example).params
    assert len(result.history) == 5 and len(calls) >= 6  # the base once, then each candidate
    assert result.score == max(r["accuracy"] for r in result.history) and 0 <= result.score <= 1
    assert result.base_score == 1.0
    assert result.model(example).shape == model(example).shape
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    json.dumps(result.strategy)
    again = amc.prune(model, example, result.strategy, calibration=inputs)
    assert torch.allclose(again(inputs), result.model(inputs), atol=1e-4)  # the strategy replays exactly


def test_the_same_seed_gives_the_same_search_and_without_run_dir_nothing_is_written(classifier, tmp_path, monkeypatch):
    model, example, inputs, labels = classifier
    monkeypatch.chdir(tmp_path)
    compress_module = importlib.import_module("amc.api.compress")  # the module, not the function amc.api exports

    disk_temp = tmp_path / "disk-temp"
    disk_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(disk_temp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    folders, made = [], []
    real = tempfile.TemporaryDirectory

    def recorded(*args, **kwargs):
        folders.append(kwargs.get("dir"))
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(compress_module.tempfile, "TemporaryDirectory", recorded)
    kwargs = {"budget": amc.Budget(params=0.5), "data": (inputs, labels), "method": "random", "evaluations": 4}
    first, second = amc.compress(model, example, **kwargs), amc.compress(model, example, **kwargs)
    assert first.strategy["channels"] == second.strategy["channels"]
    assert first.params <= 0.5 * first.base_params
    assert 0 <= first.score <= 100  # search-val top-1, percent
    assert sorted(tmp_path.iterdir()) == [disk_temp] and list(disk_temp.iterdir()) == []
    memory = compress_module.memory_folder()
    assert folders == [memory, memory] and not any(Path(folder.name).exists() for folder in made)  # removed
    if Path("/dev/shm").is_dir() and shutil.disk_usage("/dev/shm").free >= compress_module.MEMORY_NEEDED:
        assert memory == "/dev/shm"  # in memory where the OS has a tmpfs with room


def test_the_multi_fidelity_search_scores_your_metric_at_each_rung_and_shows_it_as_it_is(classifier, capsys):
    """``method="hyperband"`` distils candidates on the calibration inputs between rungs, then calls your metric;
    the progress bar shows that metric as it is, not as a percentage of top-1."""
    model, example, inputs, _ = classifier
    result = amc.compress(
        model, example, budget=amc.Budget(flops=0.5), evaluate=agreement_with(model, inputs), calibration=inputs,
        method="hyperband", evaluations=9, seed=0, agent={"name": "hyperband", "options": {"rungs": [0, 2, 6]}},
    )  # fmt: skip
    assert result.macs <= 0.5 * result.base_macs
    assert {row["evaluator"] for row in result.history} == {"lsq", "lsq+kd2", "lsq+kd6"}
    progress = capsys.readouterr().err
    assert "score=" in progress and "acc=" not in progress
    assert re.search(r"best=[0-9.]+(,|\])", progress)  # no % sign after the user's metric


def test_run_dir_writes_the_cli_files_and_a_finished_run_is_never_written_over(classifier, tmp_path):
    model, example, inputs, _ = classifier
    run = tmp_path / "run"
    kwargs = {"budget": amc.Budget(flops=0.6), "evaluate": agreement_with(model, inputs), "calibration": inputs}
    result = amc.compress(model, example, **kwargs, method="uniform", run_dir=run)
    assert {"config.yaml", "episodes.jsonl", "strategy.json", "pruned.pt"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "strategy.json").read_text())["channels"] == result.strategy["channels"]
    assert json.loads((run / "strategy.json").read_text())["metric"] == "evaluate()"
    with pytest.raises(amc.AmcError, match="finished search"):
        amc.compress(model, example, **kwargs, method="uniform", run_dir=run)
    loaded = amc.load(run / "pruned.pt", builder=Classifier)
    assert torch.allclose(loaded(inputs), result.model(inputs), atol=1e-5)


def test_a_search_killed_in_its_run_dir_resumes_to_the_same_result(classifier, tmp_path):
    model, example, inputs, _ = classifier
    kwargs = {"budget": amc.Budget(flops=0.5), "evaluate": agreement_with(model, inputs), "calibration": inputs,
              "method": "random", "evaluations": 6}  # fmt: skip
    whole = amc.compress(model, example, **kwargs)
    run = tmp_path / "killed"
    with pytest.raises(amc.AmcError, match="stopped before it finished"):
        amc.compress(model, example, **kwargs, run_dir=run, stop_after=3)
    assert len((run / "episodes.jsonl").read_text().splitlines()) == 3
    resumed = amc.compress(model, example, **kwargs, run_dir=run)
    assert resumed.strategy["channels"] == whole.strategy["channels"] and len(resumed.history) == 6
    with pytest.raises(amc.AmcError, match="stopped before it finished"):
        amc.compress(model, example, **{**kwargs, "seed": 1}, run_dir=tmp_path / "killed2", stop_after=1)
    with pytest.raises(amc.AmcError, match="other settings"):  # its episodes were found with another seed
        amc.compress(model, example, **kwargs, run_dir=tmp_path / "killed2")


def test_a_network_that_is_not_a_classifier_compresses_and_distils_with_its_own_loss():
    torch.manual_seed(0)
    model = EncoderDecoder().eval()
    images = torch.randn(96, 1, 8, 8)
    with torch.no_grad():
        wanted = model(images)

    def negative_mse(candidate: nn.Module) -> float:
        with torch.no_grad():
            return -nn.functional.mse_loss(candidate(images), wanted).item()

    result = amc.compress(
        model, images[:1], budget=amc.Budget(flops=0.4), evaluate=negative_mse, calibration=images,
        method="random", evaluations=4,
    )  # fmt: skip
    assert result.macs <= 0.4 * result.base_macs and result.model(images[:1]).shape == (1, 1, 8, 8)
    before = negative_mse(result.model)
    loader = DataLoader(TensorDataset(images), batch_size=16, shuffle=True)
    tuned = amc.distill(result.model, model, loader, epochs=3, loss=nn.functional.mse_loss, lr=0.01)
    assert tuned is result.model and negative_mse(tuned) > before  # closer to the teacher's outputs


def test_default_distillation_uses_labels_where_batches_carry_them(classifier):
    model, example, inputs, labels = classifier
    student = amc.prune(model, example, [8, 16])
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=32, shuffle=True)
    metric = agreement_with(model, inputs)
    before = metric(student)
    amc.distill(student, model, loader, epochs=4, evaluate=metric)
    assert metric(student) > before
    with pytest.raises(amc.AmcError, match="loss="):  # per-pixel outputs need the user's loss
        amc.distill(EncoderDecoder(8), EncoderDecoder(), [torch.randn(4, 1, 8, 8)], epochs=1)


def uniform_compression_is_exact(model: nn.Module, inputs: torch.Tensor, flops: float) -> None:
    """A zoo's model object, compressed directly: within the budget, its MACs recounted exactly."""
    result = amc.compress(
        model.eval(), inputs[:1], budget=amc.Budget(flops=flops), evaluate=agreement_with(model, inputs),
        calibration=inputs, method="uniform",
    )  # fmt: skip
    assert result.macs <= flops * result.base_macs
    assert result.macs == amc.profile(result.model, inputs[:1]).macs


def test_a_torchvision_model_object_compresses_directly():
    import torchvision

    torch.manual_seed(0)
    uniform_compression_is_exact(torchvision.models.mobilenet_v3_small(num_classes=4), torch.randn(32, 3, 32, 32), 0.6)


def test_a_timm_model_object_compresses_directly():
    timm = pytest.importorskip("timm")
    uniform_compression_is_exact(timm.create_model("resnet10t", num_classes=3), torch.randn(16, 3, 32, 32), 0.5)


def test_a_pruned_user_model_loads_in_a_fresh_process_with_the_same_outputs(classifier, tmp_path):
    model, example, inputs, _ = classifier
    result = amc.compress(
        model, example, budget=amc.Budget(flops=0.5), evaluate=agreement_with(model, inputs), calibration=inputs,
        method="random", evaluations=3,
    )  # fmt: skip
    result.save(tmp_path / "pruned.pt")
    torch.save(inputs[:4], tmp_path / "x.pt")
    torch.save(result.model(inputs[:4]).detach(), tmp_path / "y.pt")
    with pytest.raises(amc.AmcError, match="builder="):  # a file never chooses the code that rebuilds it
        amc.load(tmp_path / "pruned.pt")
    code = textwrap.dedent(f"""
        import torch, amc
        from tests.api.test_api import Classifier
        net = amc.load({str(tmp_path / "pruned.pt")!r}, builder=lambda: Classifier(width=16))
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        same = torch.allclose(net(x), torch.load({str(tmp_path / "y.pt")!r}, weights_only=True))
        print("SAME" if same else "DIFFERENT", net.checkpoint_metadata["strategy"]["channels"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "SAME" in proc.stdout, proc.stderr[-2000:]
    assert str(result.strategy["channels"]) in proc.stdout


def test_an_rl_agent_of_the_users_own_learns_on_make_env(classifier):
    from stable_baselines3 import TD3

    model, example, inputs, _ = classifier
    env = amc.make_env(
        model, example, budget=amc.Budget(flops=0.5), evaluate=agreement_with(model, inputs), calibration=inputs
    )
    agent = TD3("MlpPolicy", env, learning_starts=4, seed=0, policy_kwargs={"net_arch": [16, 16]})
    agent.learn(total_timesteps=12)
    obs, _ = env.reset(seed=0)
    done, info = False, {}
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, done, _, info = env.step(action)
    result = info["result"]
    assert result.macs <= 0.5 * amc.profile(model, example).macs and 0 <= reward <= 0.01


def one_line_error(call) -> str:
    with pytest.raises(amc.AmcError) as info:
        call()
    message = str(info.value)
    assert len(message.strip().splitlines()) == 1, message
    return message


def test_every_bad_input_is_one_amc_error_line_before_any_search(classifier):
    model, example, inputs, labels = classifier
    good = {"budget": amc.Budget(flops=0.5), "calibration": inputs, "evaluate": agreement_with(model, inputs)}

    def compress(**changes):
        return lambda: amc.compress(model, example, **{**good, "method": "random", **changes})

    assert "exactly one" in one_line_error(lambda: amc.Budget())
    assert "exactly one" in one_line_error(lambda: amc.Budget(flops=0.5, params=0.5))
    assert "(0, 1]" in one_line_error(lambda: amc.Budget(latency=1.5))
    assert "amc.Budget" in one_line_error(compress(budget=0.5))
    assert "finite" in one_line_error(compress(evaluate=lambda m: float("nan")))
    assert "number" in one_line_error(compress(evaluate=lambda m: "high"))
    assert "ZeroDivisionError" in one_line_error(compress(evaluate=lambda m: 1 / 0))
    assert "rejects example_input" in one_line_error(lambda: amc.compress(model, torch.randn(1, 4, 12, 12), **good))
    assert "calibration has samples" in one_line_error(compress(calibration=torch.randn(8, 3, 9, 9)))
    assert "unknown method" in one_line_error(compress(method="annealing"))
    assert "unknown option" in one_line_error(compress(temperature_of_the_room=3))
    assert "evaluate= " in one_line_error(compress(evaluate=None))
    assert "labels" in one_line_error(compress(evaluate=None, data=(inputs, labels[:3])))
    assert "Budget(" in one_line_error(compress(flops_budget=0.3))
    misspelt = one_line_error(compress(method="optuna", options={"radious": 0.2}))  # never ignored silently
    assert "unknown agent.options.radious for agent=optuna (its options: start, radius)" in misspelt


def test_help_documents_every_argument():
    for function in (amc.compress, amc.prune, amc.distill, amc.save, amc.load, amc.make_env, amc.profile):
        doc = inspect.getdoc(function) or ""
        own = [n for n in inspect.signature(function).parameters if n != "options"]
        missing = [n for n in own if f":param {n}:" not in doc and f" {n}," not in doc and f", {n}:" not in doc]
        assert not missing, (function.__name__, missing)
    assert all(getattr(amc, name).__doc__ for name in amc.__all__ if name not in ("METHODS",))


def test_the_cli_and_the_api_find_the_same_strategy_for_the_same_seed(tmp_path):
    """One search, two doors: the CLI's smoke search and amc.compress on the same base, images and settings."""
    from dataclasses import asdict

    from amc.data import build_data, stack_dataset
    from amc.strategy.task import search_calibration
    from tests.conftest import composed, run_module

    args = ["flops_budget=0.5", "experiment=smoke", "agent=random", "episodes=6", "threads=1", "seed=3"]
    proc = run_module("amc.search", *args, f"hydra.run.dir={tmp_path / 'cli'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli = json.loads((tmp_path / "cli" / "strategy.json").read_text())
    cfg = composed("search", *args)
    base = amc.load(cli["base_checkpoint"])
    data = build_data(**{**asdict(cfg.data), "augment": False})
    val = stack_dataset(data.search_val, limit=cfg.search_val_images)
    calibration = search_calibration(cfg, data, cfg.export_calibration_images)
    result = amc.compress(
        base, val[0][:1], budget=amc.Budget(flops=0.5), data=val, calibration=calibration, method="random",
        evaluations=6, seed=3, channel_round=cfg.channel_round, calibration_images=cfg.calibration_images,
        export_calibration_images=cfg.export_calibration_images, points_per_image=cfg.points_per_image,
        eval_batch_size=cfg.eval_batch_size, warmup_episodes=cfg.agent.warmup_episodes,
        prefix_cache_mb=cfg.prefix_cache_mb, eval_precision=str(cfg.eval_precision),
    )  # fmt: skip
    assert result.strategy["channels"] == cli["channels"]
    assert result.score == pytest.approx(cli["accuracy"])
