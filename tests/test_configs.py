"""Every config in conf/ composes: each entry point's own, and each option of each group it uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from amc.config import settings_of
from amc.networks import build_model, fit_input_size
from amc.settings import SCHEMAS

CONF = Path(__file__).resolve().parents[1] / "conf"
ENTRY_POINTS = sorted(p.stem for p in CONF.glob("*.yaml"))
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "sweep")


def groups_of(entry: str) -> list[str]:
    """The config groups an entry point's defaults list names (``override hydra/job_logging`` counts as hydra)."""
    defaults = OmegaConf.load(CONF / f"{entry}.yaml").get("defaults", [])
    keys = [next(iter(d)) for d in defaults if isinstance(d, dict) or OmegaConf.is_dict(d)]
    return [k.removeprefix("override ").split("/")[0] for k in keys]


def options() -> list[tuple[str, str, str]]:
    cases = []
    for entry in ENTRY_POINTS:
        for group in groups_of(entry):
            if group in GROUPS:
                cases += [(entry, group, p.stem) for p in sorted((CONF / group).glob("*.yaml"))]
    return cases


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_config_composes_and_resolves(entry):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(entry)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(settings_of(cfg), SCHEMAS[entry])  # the typed settings the library receives


@pytest.mark.parametrize(("entry", "group", "option"), options())
def test_each_group_option_composes(entry, group, option):
    overrides = [f"{group}={option}"]
    if (group, option) == ("model", "custom"):
        overrides.append("model._target_=tests.test_configs.tiny_net")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(entry, overrides=overrides)
    settings = settings_of(cfg)
    if group == "model":  # the option builds a network that classifies 10 classes of 1-channel images
        model = build_model(settings.model, num_classes=10, in_channels=1, image_size=32).eval()
        size = fit_input_size(model, 1, 32)
        with torch.no_grad():
            assert model(torch.zeros(1, 1, size, size)).shape == (1, 10)


def test_every_entry_point_has_a_schema():
    assert set(ENTRY_POINTS) == set(SCHEMAS)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("episodes=many", "episodes"),  # a wrong type
        ("episods=5", "episods"),  # a typo
        ("agent.noise_sigma=loud", "noise_sigma"),
        ("base_training.epochs=1.5", "epochs"),
    ],
)
def test_a_mistyped_override_fails_while_composing(override, message):
    with initialize_config_dir(str(CONF), version_base="1.3"), pytest.raises(Exception) as failure:
        compose("search", overrides=[override])
    assert message in str(failure.value)


def test_every_group_is_used_by_some_entry_point():
    used = {g for e in ENTRY_POINTS for g in groups_of(e)}
    assert set(GROUPS) <= used


def tiny_net():
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
