"""``python -m amc.pipeline flops_budget=0.5``: base model → search → export → fine-tune, in one run dir.

Each stage is the stage's own entry point, run as a child process with its own sub-folder, so every
stage keeps its config, logs and resume semantics. The report compares test top-1 against MACs for
the base, the uniform baseline, and the AMC strategy before and after fine-tuning (KD and CE-only).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import start_run
from amc.errors import one_line_config_errors, user_errors_exit
from amc.stages import run_pipeline


@one_line_config_errors
@hydra.main(config_path="../conf", config_name="pipeline", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    run_pipeline(settings, run_dir)


if __name__ == "__main__":
    main()
