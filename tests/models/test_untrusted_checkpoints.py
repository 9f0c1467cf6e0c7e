"""A checkpoint is data: the builder it names runs only if it is registered, torchvision's, or named by the user.

Every crafted file here is in our own format and loads with ``weights_only=True``; what it abuses is the
architecture entry, which names a callable and its keyword arguments, and an optional ``source`` file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from amc import models
from tests.conftest import assert_clean_error, run_module

DANGEROUS = [
    ("os.system", {"command": "touch {marker}"}),
    ("subprocess.getoutput", {"cmd": "touch {marker}"}),
    ("subprocess.run", {"args": ["touch", "{marker}"]}),
    ("builtins.exec", {"source": "open({marker!r}, 'w').close()"}),
    ("builtins.eval", {"source": "open({marker!r}, 'w').close()"}),
    ("pathlib.Path.touch", {"self": "{marker}"}),
    ("shutil.rmtree", {"path": "{victim}"}),
    ("torchvision.models.resnet._ovewrite_named_param", {}),  # inside torchvision, but not a classifier
    ("torchvision.datasets.MNIST", {"root": "{victim}", "download": True}),
]


def craft(path: Path, name: str, kwargs: dict, source: Path | None = None) -> Path:
    arch = {"name": name, "kwargs": kwargs, **({"source": str(source)} if source else {})}
    payload = {"format": models.FORMAT, "arch": arch, "state_dict": {"w": torch.zeros(1)}, "metadata": {}}
    torch.save(payload, path)
    return path


def fill(kwargs: dict, marker: Path, victim: Path) -> dict:
    def one(value):
        if isinstance(value, list):
            return [one(v) for v in value]
        return value.format(marker=str(marker), victim=str(victim)) if isinstance(value, str) else value

    return {k: one(v) for k, v in kwargs.items()}


@pytest.fixture
def attacker_file(tmp_path: Path) -> tuple[Path, Path]:
    """An attacker's module that leaves a marker when it is executed, and the marker's path."""
    marker = tmp_path / "attacker_ran"
    source = tmp_path / "evil_builders.py"
    source.write_text(
        f"open({str(marker)!r}, 'w').close()\nimport torch\ndef build(**kwargs):\n    return torch.nn.Linear(1, 1)\n"
    )
    return source, marker


@pytest.mark.parametrize(("name", "kwargs"), DANGEROUS, ids=[n for n, _ in DANGEROUS])
def test_the_library_refuses_a_dangerous_builder_and_runs_nothing(tmp_path, name, kwargs):
    marker, victim = tmp_path / "ran", tmp_path / "victim"
    victim.mkdir()
    path = craft(tmp_path / "crafted.pt", name, fill(kwargs, marker, victim))
    with pytest.raises(models.UntrustedBuilderError, match="not a registered model") as info:
        models.load_checkpoint(path)
    assert f"model._target_={name}" in str(info.value)  # says how to allow it
    assert not marker.exists()
    assert victim.is_dir()


def test_an_attackers_source_file_is_never_executed(tmp_path, attacker_file):
    source, marker = attacker_file
    path = craft(tmp_path / "crafted.pt", "evil_builders.build", {}, source=source)
    with pytest.raises(models.UntrustedBuilderError):
        models.load_checkpoint(path)
    # a registered name with an attacker's source beside it: the source is ignored, the registry builds it
    path = craft(tmp_path / "registered.pt", "mobilenet_v1", {"num_classes": 10}, source=source)
    with pytest.raises(models.CheckpointError, match="does not match"):
        models.load_checkpoint(path)
    assert not marker.exists()


def test_a_stored_request_for_pretrained_weights_is_refused(tmp_path):
    path = craft(tmp_path / "weights.pt", "torchvision.models.resnet18", {"weights": "IMAGENET1K_V1"})
    with pytest.raises(models.CheckpointError, match="never fetched"):
        models.load_checkpoint(path)


def _users_checkpoint(
    tmp_path: Path, stored_source: str | None = None, module: str = "my_nets_outside_sys_path"
) -> tuple[Path, Path, torch.nn.Module]:
    """A checkpoint of a user's network whose builder sits in a script outside any package (and the script)."""
    source = tmp_path / f"{module}.py"
    source.write_text("import torch\ndef build(width=3):\n    return torch.nn.Linear(width, 2)\n")
    net = torch.nn.Linear(5, 2)
    arch = {"name": f"{module}.build", "kwargs": {"width": 5}}
    if stored_source:
        arch["source"] = stored_source
    payload = {"format": models.FORMAT, "arch": arch, "state_dict": net.state_dict(), "metadata": {}}
    torch.save(payload, tmp_path / "mine.pt")
    return tmp_path / "mine.pt", source, net


def test_a_builder_the_user_names_loads_from_the_file_the_user_names(tmp_path):
    """The user's own network, saved from a script outside any package, loads once they name the builder and
    its file in this run, or pass the builder itself."""
    path, source, net = _users_checkpoint(tmp_path)
    with pytest.raises(models.UntrustedBuilderError):
        models.load_checkpoint(path)
    with pytest.raises(models.UnknownModelError, match=r"model\.source="):  # named, but where its code is unknown
        models.load_checkpoint(path, trusted_builders=["my_nets_outside_sys_path.build"])
    loaded = models.load_checkpoint(
        path, trusted_builders=["my_nets_outside_sys_path.build"], builder_source=str(source)
    )
    assert torch.equal(loaded.weight, net.weight)
    rebuilt = models.load_checkpoint(path, builder=lambda: torch.nn.Linear(5, 2))
    assert torch.equal(rebuilt.weight, net.weight)


def test_a_stored_source_path_is_never_executed_even_for_a_trusted_name(tmp_path, attacker_file):
    """The attack: a crafted file reuses a builder name the user trusts and points its stored ``source`` at an
    attacker's ``.py`` already on disk. The stored path is never read."""
    attacker, marker = attacker_file
    path, _, _ = _users_checkpoint(tmp_path, stored_source=str(attacker), module="never_imported_nets")
    with pytest.raises(models.UnknownModelError) as info:
        models.load_checkpoint(path, trusted_builders=["never_imported_nets.build"])
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_a_saved_checkpoint_stores_no_absolute_path(tmp_path, monkeypatch):
    source = tmp_path / "private_home_folder" / "mynet.py"
    source.parent.mkdir()
    source.write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    model = models.create_model("mynet.build", source=str(source))
    models.save_checkpoint(model, tmp_path / "m.pt")
    stored = torch.load(tmp_path / "m.pt", weights_only=True)["arch"]
    assert "private_home_folder" not in repr(stored)
    assert stored["source_hint"] == "mynet.py"
    monkeypatch.delitem(sys.modules, "mynet")  # as in another process, where the user's file was never run
    with pytest.raises(models.UnknownModelError, match=r"mynet\.py"):  # the hint words the error
        models.load_checkpoint(tmp_path / "m.pt", trusted_builders=["mynet.build"])


def test_registered_and_torchvision_checkpoints_load_without_naming_anything(tmp_path):
    for name, kwargs in (("mobilenet_v1", {"num_classes": 10}), ("torchvision.models.resnet18", {"num_classes": 3})):
        model = models.create_model(name, **kwargs)
        models.save_checkpoint(model, tmp_path / "m.pt")
        loaded = models.load_checkpoint(tmp_path / "m.pt")
        first = next(iter(model.state_dict()))
        assert torch.equal(loaded.state_dict()[first], model.state_dict()[first])


# Every entry point that reads a checkpoint= (or teacher=) refuses the attacker's file in one line.
ENTRY_POINTS = [
    ("amc.search", ["flops_budget=0.5", "experiment=smoke"]),
    ("amc.export", ["channels=[8]"]),
    ("amc.finetune", ["train.epochs=1"]),
    ("amc.deploy", []),
    ("amc.profile", []),
    ("amc.slim", ["data=digits"]),
    ("amc.quantize", ["data=digits"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args"), ENTRY_POINTS, ids=[m for m, _ in ENTRY_POINTS])
def test_every_entry_point_refuses_a_crafted_checkpoint(tmp_path, attacker_file, module, args):
    source, marker = attacker_file
    crafted = craft(tmp_path / "crafted.pt", "evil_builders.build", {}, source=source)
    proc = run_module(module, f"checkpoint={crafted}", f"hydra.run.dir={tmp_path / 'run'}", *args)
    assert_clean_error(proc, "evil_builders.build", "not a registered model")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args"), ENTRY_POINTS, ids=[m for m, _ in ENTRY_POINTS])
def test_every_entry_point_ignores_a_stored_source_for_a_trusted_name(tmp_path, attacker_file, module, args):
    """The user trusts ``model._target_=my_nets_outside_sys_path.build``; the file's stored source is an attacker's."""
    attacker, marker = attacker_file
    path, _, _ = _users_checkpoint(tmp_path, stored_source=str(attacker))
    trusts = ["model=custom", "model._target_=my_nets_outside_sys_path.build"]
    if module in ("amc.slim", "amc.quantize"):  # HW7's own network only: no builder can be trusted there
        trusts, expected = [], "not a registered model"
    else:
        expected = "model.source="
    proc = run_module(module, f"checkpoint={path}", *trusts, f"hydra.run.dir={tmp_path / 'run'}", *args)
    assert_clean_error(proc, expected)
    assert not marker.exists()


@pytest.mark.slow
def test_a_teacher_checkpoint_is_refused_too(tmp_path):
    marker, victim = tmp_path / "ran", tmp_path / "victim"
    crafted = craft(tmp_path / "teacher.pt", "os.system", {"command": f"touch {marker}"})
    proc = run_module(
        "amc.train", "data=digits", f"teacher={crafted}", "train.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_clean_error(proc, "os.system")
    assert not marker.exists() and not victim.exists()


def test_the_cli_builds_a_users_network_from_the_file_named_in_this_run(tmp_path):
    source = tmp_path / "outside_any_package.py"
    source.write_text(
        "import torch\ndef build(num_classes=10, in_channels=3):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3), torch.nn.Flatten(),"
        " torch.nn.LazyLinear(num_classes))\n"
    )
    args = ["model=custom", "model._target_=outside_any_package.build", f"hydra.run.dir={tmp_path / 'run'}"]
    assert_clean_error(run_module("amc.profile", *args), "model.source=")
    proc = run_module("amc.profile", *args, f"model.source={source}", "image_size=8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MACs" in proc.stdout + proc.stderr
