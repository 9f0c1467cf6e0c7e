"""Weight quantization of a state_dict, as in HW7, plus PyTorch's own int8 post-training quantization.

* ``encode16`` / ``decode16``: every floating tensor stored as float16.
* ``encode8`` / ``decode8``: per tensor, ``(min, max, uint8(round((W − min)/(max − min)·255)))``; decoded as
  ``q/255·(max − min) + min`` (round-trip error ≤ (max − min)/510 per element).
0-d tensors and integer buffers (e.g. ``num_batches_tracked``) are kept as they are.

Files are compact and load with ``torch.load(weights_only=True)``: all quantized values of a model
live in one flat buffer, with the names, shapes and ranges beside it.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from amc.errors import ConfigError
from amc.io import save_torch_atomic

FORMAT = "amc-quantized/1"


def _quantizable(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dim() > 0


def encode(state: dict[str, torch.Tensor], bits: int) -> dict[str, Any]:
    """A compact encoding of ``state`` with 16-bit floats or 8-bit per-tensor min-max codes."""
    if bits not in (8, 16, 32):
        raise ConfigError(f"bits must be 8, 16 or 32, got {bits}")
    names = [k for k, v in state.items() if _quantizable(v)]
    raw = {k: v.clone() for k, v in state.items() if not _quantizable(v)}
    flat = torch.cat([state[k].detach().float().flatten() for k in names]) if names else torch.zeros(0)
    out: dict[str, Any] = {
        "format": FORMAT,
        "bits": bits,
        "names": names,
        "shapes": [list(state[k].shape) for k in names],
        "raw": raw,
    }
    if bits == 32:
        out["data"] = flat
    elif bits == 16:
        out["data"] = flat.half()
    else:
        mins = torch.stack([state[k].detach().float().min() for k in names])
        maxs = torch.stack([state[k].detach().float().max() for k in names])
        codes = []
        for k, lo, hi in zip(names, mins, maxs, strict=True):
            span = float(hi - lo)
            w = state[k].detach().float().flatten()
            codes.append(torch.zeros_like(w) if span == 0 else torch.round((w - lo) / span * 255))
        out.update(data=torch.cat(codes).to(torch.uint8), mins=mins, maxs=maxs)
    return out


def decode(encoded: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The float32 state_dict back from ``encode``."""
    if encoded.get("format") != FORMAT:
        raise ConfigError("not an amc quantized file")
    state: dict[str, torch.Tensor] = dict(encoded["raw"])
    data, offset = encoded["data"], 0
    for i, (name, shape) in enumerate(zip(encoded["names"], encoded["shapes"], strict=True)):
        n = 1
        for d in shape:
            n *= d
        chunk = data[offset : offset + n].float()
        offset += n
        if encoded["bits"] == 8:
            lo, hi = encoded["mins"][i], encoded["maxs"][i]
            chunk = chunk / 255 * (hi - lo) + lo
        state[name] = chunk.reshape(shape)
    return state


def save_quantized(model: nn.Module, path: str | os.PathLike, bits: int) -> int:
    """Write the encoded weights with the model's architecture; returns the file size in bytes."""
    payload = {"arch": getattr(model, "arch", None), "weights": encode(model.state_dict(), bits)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch_atomic(payload, path)
    return path.stat().st_size


def load_quantized(path: str | os.PathLike) -> nn.Module:
    from amc.models import load_weights, model_from_arch, read_checkpoint

    data = read_checkpoint(path)
    if "weights" not in data or not data.get("arch"):
        raise ConfigError(f"{path} is not an amc quantized model file")
    model = model_from_arch(data["arch"])
    state = decode(data["weights"])
    load_weights(model, {k: v.to(model.state_dict()[k].dtype) for k, v in state.items()}, str(path))
    return model


def int8_ptq(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """PyTorch's own static int8 post-training quantization (FX graph mode, x86 backend), CPU only.

    ``torch.ao.quantization`` is deprecated in favour of torchao, which this project does not install (its
    builds are tied to torch versions); until it does, the deprecation notices of this optional path are
    silenced here and nowhere else.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(reduce_range|quantized tensor creation)", category=UserWarning)
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        model = model.cpu().eval()
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs=(calibration[:1],))
        with torch.inference_mode():
            for i in range(0, len(calibration), 64):
                prepared(calibration[i : i + 64])
        return convert_fx(prepared)


def cpu_latency_ms(model: nn.Module, example: torch.Tensor, repeats: int = 30) -> float:
    """Median CPU latency of one forward pass of ``example`` (ms)."""
    model = model.cpu().eval()
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(example)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]
