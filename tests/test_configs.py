"""Every config in conf/ composes: each entry point's own, and each option of each group it uses."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from amc.config import settings_of
from amc.networks import build_model, fit_input_size
from amc.settings import SCHEMAS, AgentConfig, DataConfig, DistillConfig, LoggerConfig, ModelConfig

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


GROUP_SCHEMAS = {
    "model": ModelConfig, "data": DataConfig, "agent": AgentConfig, "logger": LoggerConfig, "distill": DistillConfig
}  # fmt: skip
IDENTITY = {"name", "kind", "_target_", "runner"}  # what names a group option, default or not


def _leaves(node: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in node.items():
        flat.update(_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {prefix + key: value})
    return flat


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_the_settings_dataclass_holds_every_default_of_an_entry_point(entry):
    """Defaults are written once, in amc.settings: the composed config is the schema's own defaults, given the
    groups the YAML chose."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        settings = settings_of(compose(entry))
    schema = SCHEMAS[entry]
    chosen = {f.name: getattr(settings, f.name) for f in dataclasses.fields(schema) if f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING}  # fmt: skip
    assert set(chosen) <= set(groups_of(entry)), "a field without a default must be a group the YAML chooses"
    from_schema = settings_of(OmegaConf.structured(schema(**chosen)))
    assert from_schema == settings


def schema_default(schema: type, dotted: str) -> object:
    """The dataclass default of a dotted setting (a group field's default is its own dataclass's)."""
    head, _, rest = dotted.partition(".")
    hints = typing.get_type_hints(schema)
    spec = {f.name: f for f in dataclasses.fields(schema)}.get(head)
    if spec is None:
        return "<absent>"
    if spec.default is not dataclasses.MISSING:
        value = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
    else:
        return schema_default(hints[head], rest) if rest else "<chosen>"
    for part in rest.split(".") if rest else []:
        value = getattr(value, part) if dataclasses.is_dataclass(value) else value.get(part, "<absent>")
    return OmegaConf.to_container(OmegaConf.structured(value)) if dataclasses.is_dataclass(value) else value


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")) + sorted(CONF.glob("[!e]*/*.yaml")), ids=str)
def test_a_yaml_file_sets_no_value_its_schema_already_has(path):
    """The YAML only overrides: a key set to its dataclass default would be a second place for that default."""
    group = path.parent.name
    schema = SCHEMAS.get(path.stem) if path.parent == CONF else GROUP_SCHEMAS.get(group)
    if schema is None:  # hydra's own groups (job_logging, the shared hydra: block)
        return
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    own = {k: v for k, v in values.items() if k not in ("defaults", "hydra")}
    for key, value in _leaves(own).items():
        if key.split(".")[-1] in IDENTITY:
            continue
        default = schema_default(schema, key)
        assert value != default, f"{path.name}: {key}: {value!r} is already the default in {schema.__name__}"


def test_a_run_saved_before_a_setting_existed_resumes_with_what_it_ran(tmp_path):
    from amc.config import load_settings, save_settings
    from amc.settings import SAVED_BEFORE, SearchConfig

    with initialize_config_dir(str(CONF), version_base="1.3"):
        settings = settings_of(compose("search", overrides=["experiment=smoke"]))
    save_settings(settings, tmp_path)
    saved = (tmp_path / "config.yaml").read_text().splitlines()
    old = [line for line in saved if line.split(":")[0] not in SAVED_BEFORE["SearchConfig"]]
    (tmp_path / "config.yaml").write_text("\n".join(old) + "\n")
    resumed = load_settings(tmp_path / "config.yaml", SearchConfig)
    assert (resumed.eval_precision, resumed.screen_images, resumed.pretrained) == ("float32", None, False)
    assert resumed.episodes == settings.episodes and resumed.model == settings.model  # the rest as saved


def test_a_run_saved_before_a_method_option_existed_resumes_with_the_shipped_default(tmp_path):
    """A search saved when ``agent=optuna`` had no ``radius`` (and an option since dropped) loads with the radius
    conf/agent/optuna.yaml gives, and keeps every option it saved."""
    from amc.config import load_settings, save_settings
    from amc.settings import SearchConfig

    with initialize_config_dir(str(CONF), version_base="1.3"):
        settings = settings_of(compose("search", overrides=["experiment=smoke", "agent=optuna"]))
    settings.agent.options = {"start": "uniform", "sigma0": 0.1}
    save_settings(settings, tmp_path)
    resumed = load_settings(tmp_path / "config.yaml", SearchConfig)
    shipped = OmegaConf.load(CONF / "agent" / "optuna.yaml").options
    assert resumed.agent.options == {"start": "uniform", "sigma0": 0.1, "radius": shipped.radius}


def test_a_library_callers_method_options_are_merged_into_the_shipped_ones():
    """``agent={"options": {"pruner": "hyperband"}}`` changes the pruner and keeps the shipped rungs, as
    ``agent.options.pruner=hyperband`` does on the command line."""
    import amc
    from amc.api.compress import search_settings

    settings = search_settings(
        amc.Budget(flops=0.5), "hyperband", None, 0, {"agent": {"options": {"pruner": "hyperband"}}}
    )
    shipped = OmegaConf.to_container(OmegaConf.load(CONF / "agent" / "hyperband.yaml").options)
    assert settings.agent.options == {**shipped, "pruner": "hyperband"} != shipped


def test_the_library_reads_a_jobs_defaults_from_its_dataclass():
    """amc.distill trains with amc.finetune's schedule: the same object the CLI composes, without Hydra."""
    from amc.settings import FinetuneConfig, field_default

    with initialize_config_dir(str(CONF), version_base="1.3"):
        composed_train = settings_of(compose("finetune")).train
    assert field_default(FinetuneConfig, "train") == composed_train
    assert field_default(FinetuneConfig, "seed") == 0


@pytest.mark.parametrize("path", sorted((CONF / "agent").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_methods_known_options_are_the_ones_its_yaml_gives(path):
    """``OPTIONS`` (the keys a misspelling is checked against) and the YAML (their defaults) name the same keys."""
    from amc.strategy.runners import runner_class

    with initialize_config_dir(str(CONF), version_base="1.3"):
        agent = settings_of(compose("search", overrides=[f"agent={path.stem}"])).agent
    assert set(getattr(runner_class(agent), "OPTIONS", ())) == set(agent.options)
