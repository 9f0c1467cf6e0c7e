"""``python -m amc.deploy checkpoint=PRUNED``: ONNX export, checked with onnxruntime, and base-vs-pruned latency.

Writes ``model.onnx`` and ``deploy_summary.json`` (MACs, max |ONNX − PyTorch|, latency per engine and
batch size, and the ratios to the base network the checkpoint was pruned from).
"""

from __future__ import annotations

from amc.deployment.jobs import deploy_report
from amc.entry import job_entry_point

main = job_entry_point("deploy", deploy_report)

if __name__ == "__main__":
    main()
