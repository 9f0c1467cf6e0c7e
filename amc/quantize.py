"""``python -m amc.quantize checkpoint=MODEL data=...``: HW7 part 4, weight quantization with sizes and accuracy.

Writes ``model_fp32.pt``, ``model_fp16.pt``, ``model_uint8.pt`` (bytes and test top-1 of each in
``quantization.json``) and, beyond the course, PyTorch's int8 post-training quantization with its
measured CPU latency against float32.
"""

from __future__ import annotations

from amc.entry import job_entry_point
from amc.hw7.jobs import quantize_weights

main = job_entry_point("quantize", quantize_weights)

if __name__ == "__main__":
    main()
