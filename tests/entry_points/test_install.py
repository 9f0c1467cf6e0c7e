"""A non-editable install works from anywhere: the wheel carries its configs and installs one namespace, ``amc``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


def build_wheel(tmp_path: Path) -> Path:
    """The wheel, built from a copy of the checkout's tracked files: a build leaves build/ and *.egg-info beside its
    source, and the checkout stays as the suite found it."""
    source = tmp_path / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, tracked.decode().split("\0")):
        origin, copy = ROOT / name, source / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        elif origin.is_file():
            shutil.copy2(origin, copy)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("amc-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_ships_configs_and_search_runs_outside_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for config in ("amc/conf/search.yaml", "amc/conf/model/torchvision.yaml", "amc/conf/experiment/smoke.yaml"):
        assert config in names
    assert "amc/models/registry.py" in names and "amc/envs/channel_pruning.py" in names
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"amc"}, tops  # no top-level models, envs or conf to clash with a user's own packages
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "disabled"}
    env.pop("AMC_RUNS", None)  # the default: runs/ under the working directory
    where = subprocess.run(
        [sys.executable, "-c", "import amc, amc.models; print(amc.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "amc.search", "experiment=smoke", f"cache_dir={tmp_path / 'cache'}"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert list(elsewhere.glob("runs/search/*/strategy.json"))


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_beside_a_users_own_models_package(tmp_path):
    """Most projects have a package named ``models``: the user's and amc's both import, each as itself."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # amc's dependencies (torch is gigabytes) come from this environment; amc itself only from the wheel
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "__init__.py").write_text("WHOSE = 'the user'\n")
    code = (
        "import models, amc.models, sys\n"
        "assert models.WHOSE == 'the user', models.__file__\n"
        f"assert amc.models.__file__.startswith({site!r}), amc.models.__file__\n"
        "print('both', amc.models.create_model('mobilenet_v1', num_classes=3).arch['name'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(python), "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "both mobilenet_v1" in proc.stdout, proc.stdout + proc.stderr
