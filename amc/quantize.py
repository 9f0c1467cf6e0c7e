"""``python -m amc.quantize checkpoint=MODEL data=...``: HW7 part 4, weight quantization with sizes and accuracy.

Writes ``model_fp32.pt``, ``model_fp16.pt``, ``model_uint8.pt`` (bytes and test top-1 of each in
``quantization.json``) and, beyond the course, PyTorch's int8 post-training quantization with its
measured CPU latency against float32.
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import start_run
from amc.entry import entry_point
from amc.hw7.jobs import quantize_weights


@entry_point("quantize")
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    quantize_weights(settings, run_dir)


if __name__ == "__main__":
    main()
