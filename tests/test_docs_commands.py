"""Every command in the README and in docs/ runs as written: each ``python -m amc.<job> ...`` line composes with
the real configs (a mistyped key, group or option fails here), scripts it names exist, and the cheap ones run."""

from __future__ import annotations

import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from amc.config import settings_of
from tests.conftest import ROOT, run_module

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_HYDRA = {"amc", "amc.leaderboard"}  # a command list; a report over folders


def commands() -> list[tuple[str, str]]:
    """(document, command) for each line of each fenced bash block, continuation lines joined."""
    found = []
    for doc in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    found.append((doc.name, line))
    return found


def amc_job(command: str) -> tuple[str, list[str]] | None:
    """(module, arguments) of a ``python -m amc...`` command, whatever prefix (``./run``, ``torchrun ...``)."""
    words = shlex.split(command.replace("$FOOD", "food-11"))
    if "-m" not in words or not words[words.index("-m") + 1].startswith("amc"):
        return None
    start = words.index("-m") + 1
    args = [w for w in words[start + 1 :] if w != "-m" and "&&" not in w]
    return words[start], args


COMMANDS = commands()
JOBS = [(doc, c, job) for doc, c in COMMANDS if (job := amc_job(c)) is not None]


def test_the_documents_have_commands():
    assert len(JOBS) >= 20, JOBS


@pytest.mark.parametrize(("doc", "command", "job"), JOBS, ids=[f"{d}:{c[:60]}" for d, c, _ in JOBS])
def test_every_documented_amc_command_composes(doc, command, job):
    module, args = job
    if module in NOT_HYDRA:
        return
    entry = module.removeprefix("amc.")
    assert (ROOT / "conf" / f"{entry}.yaml").is_file(), f"{doc}: no such command {module}"
    overrides = [a for a in args if "=" in a]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        # a sweep's comma lists and sweeper ranges (interval(a,b), choice(a,b)) compose one value: the first
        overrides = [re.sub(r"=(?:interval|range|choice)\(([^,)]+)[^)]*\)$", r"=\1", o) for o in overrides]
        cfg = compose(entry, overrides=[re.sub(r"=([^,\[\]]+),[^\[\]]*$", r"=\1", o) for o in overrides],
                      return_hydra_config=any(o.startswith("hydra") for o in overrides))  # fmt: skip
    if "hydra" in cfg:
        with open_dict(cfg):
            del cfg["hydra"]
    settings_of(cfg)


SCRIPTS = sorted({w for _, c in COMMANDS for w in shlex.split(c) if w.startswith("experiments/")})


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_documented_script_exists(script):
    assert (ROOT / script).is_file(), script


@pytest.mark.slow
@pytest.mark.parametrize("command", ["python -m amc", "python -m amc.profile model=mobilenet_v2"])
def test_the_cheap_commands_run_as_written(command):
    assert command in {c for _, c in COMMANDS}, f"{command!r} is no longer documented"
    module, args = amc_job(command)
    proc = run_module(module, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
