"""The notebooks in examples/ run, top to bottom, with small settings (their ``parameters`` cell replaced)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import FMNIST, ROOT

SMALL = {
    "quickstart": 'EVALUATIONS = 3\nEPOCHS = 1.0\nLIMIT = 300\nMETHOD = "random"',
    "your_model_your_metric": "EVALUATIONS = 3\nEPOCHS = 1\nTRAIN_STEPS = 10",
    "your_rl_agent": "TIMESTEPS = 16",
}


def test_every_notebook_has_small_settings():
    assert {p.stem for p in (ROOT / "examples").glob("*.ipynb")} == set(SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_notebook_runs(name, tmp_path):
    if name == "quickstart" and not FMNIST.is_dir():
        pytest.fail(f"the quickstart reads Debian's Fashion-MNIST ({FMNIST}); ./run installs it")
    book = nbformat.read(ROOT / "examples" / f"{name}.ipynb", as_version=4)
    parameters = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "one cell tagged 'parameters'"
    parameters[0].source = SMALL[name]
    # run where it may write its files (never into the checkout), importing this checkout's amc
    client = NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=_with_checkout_on_path())
    outputs = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Error" not in outputs
    assert any(Path(tmp_path).iterdir()) or name == "your_rl_agent"  # the saves went to the run's own folder


def _with_checkout_on_path() -> dict[str, str]:
    import os

    # one thread: the kernel shares the cores with the suite's other worker, and oversubscribed OpenMP threads wait
    # on each other (a notebook ran 10x slower on two threads beside another job)
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
