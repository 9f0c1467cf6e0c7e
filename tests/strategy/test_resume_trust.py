"""A run dir is a file like any other: resuming one imports no code its saved config names, unless restated."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import assert_clean_error, run_module

SMOKE = ["flops_budget=0.5", "experiment=smoke", "episodes=4", "threads=1"]


@pytest.fixture(scope="module")
def stopped_search(tmp_path_factory):
    """A smoke search stopped after 2 episodes: a run dir a resume would continue."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    proc = run_module("amc.search", *SMOKE, "stop_after=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def doctor(run_dir, tmp_path, edit) -> tuple:
    """A copy of ``run_dir`` whose config.yaml ``edit`` changed, and the marker its planted code would leave."""
    import shutil

    copy = tmp_path / "doctored"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "planted_code_ran"
    config = yaml.safe_load((copy / "config.yaml").read_text())
    edit(config, marker)
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    return copy, marker


def as_os_system(config, marker):
    config["model"] = {
        "name": "custom",
        "_target_": "os.system",
        "kwargs": {"command": f"touch {marker}"},
        "supports_small_input": False,
    }


def as_planted_runner(config, marker):
    planted = marker.parent / "planted_runner.py"
    planted.write_text(f"open({str(marker)!r}, 'w').close()\nclass Runner:\n    pass\n")
    config["agent"]["runner"] = "planted_runner.Runner"


def as_planted_source(config, marker):
    planted = marker.parent / "planted_builder.py"
    planted.write_text(f"open({str(marker)!r}, 'w').close()\ndef build(**kw):\n    raise SystemExit\n")
    config["model"].update({"name": "custom", "_target_": "planted_builder.build", "source": str(planted)})


@pytest.mark.slow
@pytest.mark.parametrize("edit", [as_os_system, as_planted_runner, as_planted_source], ids=lambda f: f.__name__)
def test_a_doctored_run_dir_runs_no_code_and_says_how_to_allow_it(stopped_search, tmp_path, edit):
    run_dir, marker = doctor(stopped_search, tmp_path, edit)
    proc = run_module("amc.search", f"resume={run_dir}", pythonpath=marker.parent)
    assert_clean_error(proc, "not amc's own", "restate it on the command line")
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not marker.exists()


@pytest.mark.slow
def test_restating_a_name_on_the_command_line_is_the_users_word(stopped_search, tmp_path):
    run_dir, marker = doctor(stopped_search, tmp_path, as_planted_runner)
    run_module("amc.search", f"resume={run_dir}", "agent.runner=planted_runner.Runner", pythonpath=marker.parent)
    assert marker.exists()  # the user named it in this run, so it was imported


@pytest.mark.slow
def test_an_honest_run_dir_resumes(stopped_search):
    proc = run_module("amc.search", f"resume={stopped_search}", "threads=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (stopped_search / "strategy.json").is_file()
