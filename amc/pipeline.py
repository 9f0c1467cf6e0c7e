"""``python -m amc.pipeline flops_budget=0.5``: base model → search → export → fine-tune, in one run dir.

Each stage is the stage's own entry point, run as a child process with its own sub-folder, so every
stage keeps its config, logs and resume semantics. The report compares test top-1 against MACs for
the base, the uniform baseline, and the AMC strategy before and after fine-tuning (KD and CE-only).
"""

from __future__ import annotations

from dataclasses import fields

from omegaconf import DictConfig

from amc.config import load_settings, run_dir_of, settings_of, start_run
from amc.entry import entry_point
from amc.errors import ConfigError
from amc.pipeline_steps import run_pipeline
from amc.settings import PipelineConfig


def refuse_another_pipeline(settings: PipelineConfig) -> None:
    """Re-running a pipeline in its run dir continues it (finished stages are kept); with other settings it would
    mix two pipelines' stages in one report, so it is refused."""
    saved = run_dir_of() / "config.yaml"
    if not saved.is_file():
        return
    before = load_settings(saved, PipelineConfig)
    changed = [
        f.name
        for f in fields(PipelineConfig)
        if f.name != "logger_group" and getattr(before, f.name) != getattr(settings, f.name)  # how it is tracked
    ]
    if changed:
        listed = "; ".join(f"{n}={getattr(settings, n)} (it ran with {getattr(before, n)})" for n in changed)
        raise ConfigError(
            f"{saved.parent} holds a pipeline run with other settings: {listed}; choose another hydra.run.dir "
            "(the same command again continues that run)"
        )


@entry_point("pipeline")
def main(cfg: DictConfig) -> None:
    refuse_another_pipeline(settings_of(cfg))
    settings, run_dir = start_run(cfg)
    run_pipeline(settings, run_dir)


if __name__ == "__main__":
    main()
