"""What lets a killed search continue exactly: the agent's state, the random generators and the
number of recorded episodes, saved at episode boundaries.

Tensors go first, under a name of their own, then the JSON that points at them: a kill between the
two writes leaves the previous, consistent pair.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amc.io import save_torch_atomic, write_json_atomic

STATE_JSON = "search_state.json"


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's global generators, as JSON."""
    np_state = np.random.get_state()
    return {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


@dataclass
class SavedSearch:
    episodes: int
    agent: dict[str, Any]
    tensors: dict[str, Any]
    probes: int = 0  # a method's probing evaluations recorded by then


class SearchStateFiles:
    """``search_state.json`` (scalars, generators) and ``search_state_NNNNN.pt`` (the agent's tensors)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.json = run_dir / STATE_JSON

    def exists(self) -> bool:
        return self.json.is_file()

    def save(
        self, episodes: int, agent_scalars: dict[str, Any], agent_tensors: dict[str, Any], probes: int = 0
    ) -> None:
        name = f"search_state_{episodes + probes:05d}.pt"
        save_torch_atomic(agent_tensors, self.run_dir / name)
        state = {"episodes": episodes, "probes": probes, "agent": agent_scalars, "rng": rng_state(), "tensors": name}
        write_json_atomic(self.json, state)
        for old in self.run_dir.glob("search_state_*.pt"):
            if old.name != name:
                old.unlink()

    def load(self) -> SavedSearch:
        """The last saved state; the global generators are restored as a side effect."""
        scalars = json.loads(self.json.read_text())
        tensors = torch.load(self.run_dir / scalars["tensors"], weights_only=True)
        set_rng_state(scalars["rng"])
        return SavedSearch(scalars["episodes"], scalars["agent"], tensors, scalars.get("probes", 0))
