"""``python -m amc.deploy checkpoint=PRUNED``: ONNX export, checked with onnxruntime, and base-vs-pruned latency.

Writes ``model.onnx`` and ``deploy_summary.json`` (MACs, max |ONNX − PyTorch|, latency per engine and
batch size, and the ratios to the base network the checkpoint was pruned from).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from amc.config import start_run
from amc.deployment import deploy_report
from amc.errors import one_line_config_errors, user_errors_exit


@one_line_config_errors
@hydra.main(config_path="conf", config_name="deploy", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    deploy_report(settings, run_dir)


if __name__ == "__main__":
    main()
