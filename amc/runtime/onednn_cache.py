"""How many compiled oneDNN kernels a search process keeps (lab notebook, "oneDNN's kernel cache").

Every scored strategy has new layer shapes, so each one compiles its own kernels, and a kept kernel's memory pins
the heap between the activations: the heap then holds freed space it cannot give back.
"""

from __future__ import annotations

import os

ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
_BOUNDED_BY_AMC = "AMC_BOUNDED_ONEDNN_CACHE"


def primitive_cache_capacity(layers: int | None) -> int:
    """Room for one forward's kernels twice over, never under 64 (below one forward's kernels evaluation slows
    down); ``layers`` is the network's conv and linear layers (``None``, not known: 256)."""
    if not layers:
        return 256
    return max(64, min(1024, 2 * layers + 8))


def bound_primitive_cache(layers: int | None = None) -> None:
    """Keep few compiled oneDNN kernels in a search process (unless the user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``).
    oneDNN reads it once, at the first kernel: call before any network runs."""
    if ONEDNN_CACHE not in os.environ:
        os.environ[ONEDNN_CACHE] = str(primitive_cache_capacity(layers))
        os.environ[_BOUNDED_BY_AMC] = "1"


def unbound_primitive_cache() -> None:
    """In a child that trains (fixed shapes, forward and backward kernels of every layer): oneDNN's default
    capacity again, unless the user chose one."""
    if os.environ.pop(_BOUNDED_BY_AMC, None):
        os.environ.pop(ONEDNN_CACHE, None)
