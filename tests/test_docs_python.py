"""docs/python-api.md's snippets run, in order, as one session (with fewer evaluations and steps)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

SMALLER = {
    "evaluations=20": "evaluations=3",
    "learning_starts=100": "learning_starts=8",
    "total_timesteps=1000": "total_timesteps=16",
    "torch.randn(256, 3, 32, 32)": "torch.randn(64, 3, 16, 16)",
    "resnet18": "mobilenet_v2",  # ResNet-18's 3x3 refits take most of a minute on 2 cores: the guide's ways, quicker
}


@pytest.mark.slow
def test_the_python_api_guide_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 7
    code = "\n".join(blocks)
    for long, short in SMALLER.items():
        assert long in code, long
        code = code.replace(long, short)
    monkeypatch.chdir(tmp_path)  # the guide's saves land here
    exec(compile(code, "docs/python-api.md", "exec"), {"__name__": "python_api_guide"})
    assert (tmp_path / "mobilenet_v2_half_macs.pt").is_file()
