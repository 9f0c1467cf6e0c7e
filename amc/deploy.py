"""``python -m amc.deploy checkpoint=PRUNED``: ONNX export, checked with onnxruntime, and base-vs-pruned latency.

Writes ``model.onnx`` and ``deploy_summary.json`` (MACs, max |ONNX − PyTorch|, latency per engine and
batch size, and the ratios to the base network the checkpoint was pruned from).
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import start_run
from amc.deployment.jobs import deploy_report
from amc.entry import entry_point


@entry_point("deploy")
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    deploy_report(settings, run_dir)


if __name__ == "__main__":
    main()
