"""The config layer: Hydra's composed ``DictConfig`` in, typed settings (``amc.settings``) out.

The only module that touches omegaconf besides the entry points' ``@hydra.main``. It registers each
entry point's schema, so Hydra rejects a mistyped override while composing, converts a composed
config to its dataclass, and owns the run dir and the saved, resolved config of a run.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from amc.errors import ConfigError
from amc.io import write_text_atomic
from amc.settings import CODE_KEYS, SAVED_BEFORE, SCHEMAS, range_errors, within

T = TypeVar("T")

for _name, _schema in SCHEMAS.items():
    ConfigStore.instance().store(name=f"{_name}_schema", node=_schema)

# ``${amc_or:${resume},runs/search/...}``: a resumed job writes into the dir it resumes, so Hydra makes no
# stray new run dir for it (registered here, on import by every entry point, before Hydra composes).
OmegaConf.register_new_resolver(
    "amc_or", lambda value, default: default if value in (None, "") else value, replace=True
)


CONFIG_DIR = Path(__file__).resolve().parent / "conf"  # absolute: found whatever module composes


def compose_settings(config_name: str, overrides: list[str], updates: dict[str, Any] | None = None) -> Any:
    """The typed settings of ``conf/<config_name>.yaml`` with Hydra ``overrides``, then ``updates`` (dotted key ->
    value, checked against the schema): what an entry point would get, for a caller in Python (the library).
    A bad override or an unknown key is one ConfigError line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its config dir is this one
            cfg = compose(config_name=config_name, overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose(config_name=config_name, overrides=overrides)
        for key, value in (updates or {}).items():
            if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
                raise ConfigError(f"unknown option {key!r}")
            _update(cfg, key, value)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(" ".join(str(exc).split("Config search path:")[0].split())[:300]) from None
    return settings_of(cfg)


def _update(cfg: DictConfig, key: str, value: Any) -> None:
    """Set ``key``; a mapping is merged into the config's, key by key, as the command line's overrides are. A free
    mapping (``agent.options``) takes new keys too: the method that reads it names a key it does not know."""
    node = OmegaConf.select(cfg, key)
    if not (isinstance(value, Mapping) and isinstance(node, DictConfig)):
        OmegaConf.update(cfg, key, value, merge=False)
    elif OmegaConf.get_type(node) is dict:
        with open_dict(node):
            node.merge_with(value)
    else:
        OmegaConf.update(cfg, key, value, merge=True)


def settings_of(cfg: DictConfig) -> Any:
    """The typed settings (an ``amc.settings`` dataclass) of a composed, schema-backed config."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"set {', '.join(missing)} (no value given)")
    try:
        settings = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    errors = range_errors(settings)  # every numeric option, before any work starts
    if errors:
        raise ConfigError("; ".join(errors))
    return settings


def saved_config(path: Path, schema: type) -> DictConfig:
    """A run dir's saved config over ``schema``: a setting it lacks (saved before the setting existed) takes the
    value such runs ran with (``amc.settings.SAVED_BEFORE``), else today's default."""
    saved = OmegaConf.load(path)
    before = {key: value for key, value in SAVED_BEFORE.get(schema.__name__, {}).items() if key not in saved}
    return OmegaConf.merge(OmegaConf.structured(schema), before, _method_options_of(saved), saved)


def _method_options_of(saved: DictConfig) -> dict[str, Any]:
    """The options amc's ``conf/agent/NAME.yaml`` gives the saved run's method, for a saved config that predates
    one of them (its own values win in the merge)."""
    name = OmegaConf.select(saved, "agent.name", default=None)
    if name not in _shipped_agents():
        return {}  # not a search, or a method amc does not ship
    options = _shipped_agents()[name].get("options")
    return {"agent": {"options": options}} if options else {}


def load_settings(path: Path, schema: type[T]) -> T:
    """A run dir's saved ``config.yaml``, checked against ``schema`` (for resume)."""
    try:
        saved = saved_config(path, schema)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path} does not match this entry point's settings: {str(exc).splitlines()[0]}") from None
    return settings_of(saved)


def save_settings(settings: Any, run_dir: Path, name: str = "config.yaml") -> None:
    """Write typed settings (an ``amc.settings`` dataclass) as a run dir's config, the recipe a resume compares."""
    write_text_atomic(run_dir / name, OmegaConf.to_yaml(OmegaConf.structured(settings)))


def run_dir_of(resume: str | None = None) -> Path:
    """The run's output folder: ``resume`` when resuming, else Hydra's run dir."""
    if resume:
        path = Path(resume)
        if not path.is_dir():
            raise ConfigError(f"resume={path}: no such run dir")
        return path
    from hydra.core.hydra_config import HydraConfig

    path = Path(HydraConfig.get().runtime.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_resolved_config(cfg: DictConfig, run_dir: Path, name: str = "config.yaml") -> None:
    """Write the fully resolved config (the run's recipe) into the run dir; never overwrite a resumed one."""
    path = run_dir / name
    if path.exists() and cfg.get("resume"):
        path = run_dir / f"resume-{name}"
    write_text_atomic(path, OmegaConf.to_yaml(cfg, resolve=True))


def command_line_overrides() -> dict[str, str]:
    """This run's command-line overrides, key → the override as typed (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {o.split("=", 1)[0].lstrip("+~"): o for o in HydraConfig.get().overrides.task}


PER_INVOCATION = ("stop_after",)  # settings of one invocation, never carried into its resumption

# What a resumed run's command line may change: how it runs, never what it computes. A search resumed with
# `flops_budget=0.3` used to keep its 0.5-budget episodes and export over the results of the finished run.
RESUME_MAY_CHANGE = (
    "resume",
    "threads",
    "device",
    "devices",
    "stop_after",
    "cache_dir",
    "logger",
    "data.root",
    "on_existing",
)
# what lengthens a run, and its own runtime settings: a search's episodes; a training run's epochs
RESUME_EXTENDS = {"SearchConfig": ("episodes", "search_cpu_s")}
DEFAULT_EXTENDS = ("train.epochs", "train.num_workers")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _short(value: Any) -> Any:
    """A saved setting as a user names it: a config group (``model``, ``data``) by its name."""
    return value.get("name", value) if isinstance(value, dict) else value


_ABSENT = object()  # OmegaConf.select's default: tells a key set to null from a key the config lacks


def resumed_config(cfg: DictConfig, schema: type, run_dir: Path) -> DictConfig:
    """A resumed run's config: its saved ``config.yaml``, changed only where this command line says so (e.g.
    ``threads=1``, or ``train.epochs=30`` to extend a schedule); every other setting is the one it began with,
    not this entry point's default. It is saved beside the original as ``resume-config.yaml``.

    A setting that changes what the run computes (a budget, the model, the seed, ...) is refused: its results so
    far were computed with the old value."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml: not a run dir of this command")
    allowed = RESUME_MAY_CHANGE + RESUME_EXTENDS.get(schema.__name__, DEFAULT_EXTENDS)
    # a group that merges into the top level (``experiment=...``) is no setting of its own: the keys it set are
    # the run's settings, and those the run began with are kept (a sweep launched again repeats it)
    given = {
        k: o for k, o in command_line_overrides().items() if OmegaConf.select(cfg, k, default=_ABSENT) is not _ABSENT
    }
    try:
        saved = saved_config(path, schema)
        changed = [
            f"{typed} (it began with {_short(old)})"
            for key, typed in given.items()
            if not within(key, allowed)
            and _plain(OmegaConf.select(cfg, key)) != (old := _plain(OmegaConf.select(saved, key)))
        ]
        if changed:
            may = ", ".join(a for a in allowed if a != "resume")
            raise ConfigError(
                f"resume={run_dir} continues a run with the settings it began with, and {'; '.join(changed)} would "
                f"change what it computes: start a new run instead (a resume may change only {may})"
            )
        for key in [*given, *(k for k in PER_INVOCATION if k in cfg)]:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
        check_saved_imports(saved, path)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path} does not match this entry point's settings: {str(exc).splitlines()[0]}") from None
    saved.resume = str(run_dir)
    return saved


def _import_targets(node: Any, prefix: str = "") -> dict[str, str]:
    """Every setting in a plain config tree that names code: ``_target_``, ``runner``, ``source`` at any depth,
    and ``model.name`` (a dotted name there is imported too)."""
    found: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, (dict, list)):
                found.update(_import_targets(value, f"{path}."))
            elif isinstance(value, str) and (key in CODE_KEYS or path == "model.name"):
                found[path] = value
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.update(_import_targets(value, f"{prefix}{i}."))
    return found


@functools.cache
def _shipped_agents() -> dict[str, DictConfig]:
    """amc's own search methods, ``conf/agent/NAME.yaml``, by name (read once)."""
    return {path.stem: OmegaConf.load(path) for path in (CONFIG_DIR / "agent").glob("*.yaml")}


@functools.cache
def _shipped_runners() -> frozenset[str]:
    """The runner classes amc's own ``conf/agent/*.yaml`` name: amc's code, safe to import."""
    return frozenset(str(agent.get("runner")) for agent in _shipped_agents().values())


def _is_amcs_own(key: str, value: str) -> bool:
    from amc.models import list_models
    from amc.models.registry import is_torchvision_classifier

    if key.endswith("source"):
        return False  # a file to execute is only ever the user's word in this run
    if key.endswith("runner"):
        return value in _shipped_runners()
    return value in list_models() or value == "custom" or is_torchvision_classifier(value)


def check_saved_imports(saved: DictConfig, path: Path) -> None:
    """Refuse a saved config that names code this run's command line does not restate: a run dir is a file like
    any other, and a downloaded one must not choose what is imported (``model._target_=os.system``)."""
    given = command_line_overrides()
    stated = {key: typed.split("=", 1)[1] for key, typed in given.items() if "=" in typed}
    untrusted = [
        (key, value)
        for key, value in _import_targets(OmegaConf.to_container(saved, resolve=True)).items()
        if not _is_amcs_own(key, value) and stated.get(key) != value
    ]
    if untrusted:
        names = " ".join(f"{key}={value}" for key, value in untrusted)
        raise ConfigError(
            f"{path} names code to import or run ({names}), which is not amc's own, so it was not used; "
            f"if you trust this run dir, restate it on the command line: resume=... {names}"
        )


class FinishedRun(Exception):
    """A run dir continued with ``on_existing=continue`` whose run has finished: its results are kept as they are."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"{run_dir}: this run has finished")
        self.run_dir = run_dir


def start_run(
    cfg: DictConfig,
    results: tuple[str, ...] = (),
    job: str = "run",
    *,
    finished: tuple[str, ...] = (),
    check: Callable[[Any], None] | None = None,
) -> tuple[Any, Path]:
    """(typed settings, run dir) for an entry point, the one path every job starts on.

    A new run dir must not hold ``results`` of an earlier run. A resumed run (``resume=DIR``, or ``on_existing=
    continue`` on a run dir that holds a config) continues with its saved settings (``resumed_config``), unless it
    holds every file in ``finished``: then a resume is refused (it would write over them), and a continued sweep
    job raises :class:`FinishedRun`. ``check(settings)`` runs before the config is saved (the job's input checks).
    The resolved config is saved (by rank 0 only under torchrun); a resumed run's beside the original.
    """
    settings = settings_of(cfg)
    resume = getattr(settings, "resume", None)
    if not resume and getattr(settings, "on_existing", None) == "continue":
        here = run_dir_of()
        if (here / "config.yaml").is_file():  # a sweep launched again: each job continues its own run dir
            if finished and all((here / name).exists() for name in finished):
                raise FinishedRun(here)
            resume = str(here)
    run_dir = run_dir_of(resume)
    if resume:
        if finished and all((run_dir / name).exists() for name in finished):
            raise ConfigError(
                f"resume={run_dir}: this {job} has finished ({' and '.join(finished)} hold its results, which a "
                "resume would write over); start a new run in another hydra.run.dir"
            )
        cfg = resumed_config(cfg, type(settings), run_dir)
        settings = settings_of(cfg)
    elif results:
        from amc.io import refuse_finished_run

        refuse_finished_run(run_dir, results, job)
    if check is not None:
        check(settings)
    if int(os.environ.get("RANK", "0")) == 0:
        save_resolved_config(cfg, run_dir)
    return settings, run_dir
