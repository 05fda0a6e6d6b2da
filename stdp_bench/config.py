"""Grid and cell configuration: frozen dataclasses validated at the edge.

A grid file (TOML) has a ``name``, an optional ``description``, a ``[settings]`` table of
fixed values and a ``[factors]`` table mapping setting names to lists of levels. Every
key must be a field of :class:`CellConfig`; categorical settings only accept the levels
their registry lists. Errors name the bad key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from stdp_bench.levels import registry
from stdp_bench.levels.spec import ConfigError, Level, Param

__all__ = ["CellConfig", "ConfigError", "GridSpec", "SETTINGS", "apply_overrides",
           "check_cell", "check_value", "choices", "declaration", "grids_dir", "load_grid",
           "make_cell", "parse_grid", "resolve_grid_path", "with_settings"]

# Axes whose levels come from the registries (stdp_bench.levels.registry).
REGISTRY_AXES = ("architecture", "dataset", "encoder", "neuron", "rule")


def setting(default: Any, *, unit: str = "", low: float | None = None,
            high: float | None = None, low_open: bool = False,
            choices: tuple[str, ...] = ()) -> Any:
    """A :class:`CellConfig` field whose metadata declares what it accepts.

    The declaration becomes a :class:`~stdp_bench.levels.spec.Param` in :data:`SETTINGS`;
    ``check_value`` validates against it, ``stdp-bench levels`` lists it.
    """
    return field(default=default, metadata={"unit": unit, "low": low, "high": high,
                                            "low_open": low_open, "choices": choices})


# Guards against typos that would run for days or exhaust memory.
_HUGE = 10_000_000
POS = {"low": 0.0, "low_open": True}  # strictly positive


@dataclass(frozen=True)
class CellConfig:
    """Every setting of one grid cell. Defaults follow BindsNET's ``DiehlAndCook2015``.

    Settings that a level declares (``Level.params``, e.g. triplet's ``tc_post2_ms``)
    live in ``level_settings`` and read as attributes like the others; build cells with
    :func:`make_cell` / :func:`with_settings`, which sort the two apart.

    >>> cfg = CellConfig(neuron="lif")
    >>> cfg.tc_decay_ms, cfg.with_settings(inh=10.0).inh
    (100.0, 10.0)
    """

    # What is compared.
    family: str = setting("stdp", choices=("stdp", "ann", "surrogate"))
    architecture: str = "dc2015"
    encoder: str = "poisson"
    neuron: str = "adaptive"
    rule: str = "stdp"
    # Data and protocol.
    dataset: str = "mnist"
    # Colour images (cifar10): "gray" (one luminance channel) or "rgb" (three).
    color: str = setting("gray", choices=("gray", "rgb"))
    # Image front end: "dog" turns each channel into difference-of-Gaussians ON and OFF
    # channels (stdp_bench/preprocess.py); "none" feeds the pixels.
    preprocess: str = setting("none", choices=("none", "dog"))
    split: str = setting("test", choices=("test", "validation"))
    # Where the labelling samples come from: "heldout" (disjoint from training) or "train"
    # (the last n_label training samples, seen again with plasticity off, as Diehl & Cook
    # label on training data; this lets n_train use the whole training split).
    label_source: str = setting("heldout", choices=("heldout", "train"))
    n_train: int = setting(1000, low=1, high=_HUGE)
    n_label: int = setting(1000, low=1, high=_HUGE)
    n_test: int = setting(1000, low=1, high=_HUGE)
    epochs: int = setting(1, low=1, high=1000)
    # Learning curve: label and test every this many training presentations (across
    # epochs) as well as at the end; 0 evaluates only at the end.
    curve_every: int = setting(0, low=0, high=_HUGE)
    seed: int = setting(0, low=0)
    # Network size and simulation.
    n_neurons: int = setting(100, low=1, high=100_000)
    time: int = setting(250, unit="ms", low=1, high=100_000)
    dt: float = setting(1.0, unit="ms", **POS)
    # Encoding: maximum rate of the brightest pixel; Bernoulli matches it per step.
    intensity_hz: float = setting(128.0, unit="Hz", **POS)
    # Input current gain; 0 picks the encoder's own (its module's input_gain, else 1).
    input_gain: float = setting(0.0, low=0.0)
    # Diehl & Cook presentation retry: fewer than min_spikes excitatory spikes -> show the
    # sample again with the rate raised by retry_rate_step_hz (0 disables).
    min_spikes: int = setting(0, low=0)
    retry_rate_step_hz: float = setting(32.0, unit="Hz", low=0.0)
    max_retries: int = setting(5, low=0)
    # Connectivity.
    exc: float = setting(22.5, low=0.0)
    inh: float = setting(120.0, low=0.0)
    w_init_max: float = setting(0.3, low=0.0)
    wmin: float = 0.0
    wmax: float = 1.0
    norm: float = setting(78.4, low=0.0)
    # Learning rule coefficients.
    nu_pre: float = setting(1e-4, low=0.0)
    nu_post: float = setting(1e-2, low=0.0)
    tc_trace_ms: float = setting(20.0, unit="ms", **POS)
    # Teacher: depolarisation added each step to the neurons of the sample's class.
    teacher_drive_mv: float = setting(0.25, unit="mV", low=0.0)
    # Excitatory neurons.
    thresh_mv: float = setting(-52.0, unit="mV")
    rest_mv: float = setting(-65.0, unit="mV")
    reset_mv: float = setting(-60.0, unit="mV")
    refrac_ms: float = setting(5.0, unit="ms", low=0.0)
    tc_decay_ms: float = setting(100.0, unit="ms", **POS)
    theta_plus: float = setting(0.05, unit="mV", low=0.0)
    tc_theta_decay_ms: float = setting(1e7, unit="ms", **POS)
    one_spike: bool = True
    # Inhibitory neurons.
    inh_thresh_mv: float = setting(-40.0, unit="mV")
    inh_rest_mv: float = setting(-60.0, unit="mV")
    inh_reset_mv: float = setting(-45.0, unit="mV")
    inh_refrac_ms: float = setting(2.0, unit="ms", low=0.0)
    inh_tc_decay_ms: float = setting(10.0, unit="ms", **POS)
    # Readouts.
    ngram_n: int = setting(2, low=1)
    # Convolutional / locally connected layers (architecture conv, local, cnn).
    kernel_size: int = setting(12, low=1)
    stride: int = setting(4, low=1)
    n_filters: int = setting(25, low=1)
    pool: int = setting(1, low=1)
    winners: int = setting(1, low=1)
    # Total input weight per filter (conv) or per neuron (local), and the inhibition
    # between feature maps at one location.
    conv_norm: float = setting(10.0, **POS)
    conv_inh: float = setting(5.0, low=0.0)
    # Which spikes of a conv / local layer learn: "every_spike" (BindsNET's rules as they
    # are) or "first_spike" (Kheradpisheh et al. 2018: each filter once per image, at its
    # first spike, claiming that place; see networks/first_spike.py). dc2015 ignores it.
    conv_learning: str = setting("every_spike", choices=("every_spike", "first_spike"))
    # Gradient-trained baselines (family ann, surrogate).
    batch_size: int = setting(128, low=1)
    lr: float = setting(1e-3, **POS)
    surrogate_slope: float = setting(25.0, **POS)
    surrogate_beta: float = 0.9
    mem_reg: float = setting(0.0, low=0.0)
    # Values of settings declared by levels, as sorted (name, value) pairs; only those
    # that differ from the declared default (so adding a level setting orphans no cell).
    level_settings: tuple[tuple[str, Any], ...] = ()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: a level's declared setting.
        if name.startswith("__"):
            raise AttributeError(name)
        declared = _level_param(name)
        if declared is None:
            raise AttributeError(f"CellConfig has no setting {name!r}")
        for key, value in object.__getattribute__(self, "level_settings"):
            if key == name:
                return value
        return declared.default

    def with_settings(self, **changes: Any) -> "CellConfig":
        """A copy with ``changes`` applied (core and level settings alike)."""
        return with_settings(self, **changes)

    def cell_id(self) -> str:
        """Stable id: a hash of every resolved setting.

        Settings added after results were first published (``LATE_FIELDS``) enter the
        hash only when they differ from their default, so adding a setting does not
        orphan finished cells.
        """
        d = dataclasses.asdict(self)
        for name in LATE_FIELDS:
            if d[name] == _DEFAULTS[name]:
                del d[name]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """All settings as a plain dict, with the settings its own levels declare."""
        d = dataclasses.asdict(self)
        del d["level_settings"]
        for axis in REGISTRY_AXES:
            level = registry.get(axis, d[axis])
            for p in level.params:
                d[p.name] = getattr(self, p.name)
        return d


_CORE_FIELDS = tuple(f for f in fields(CellConfig) if f.name != "level_settings")
# Every core setting's declaration; a setting without metadata accepts any value of its
# type (finite, for floats).
SETTINGS: dict[str, Param] = {
    f.name: Param(f.name, f.default, unit=f.metadata.get("unit", ""),
                  low=f.metadata.get("low"), high=f.metadata.get("high"),
                  low_open=f.metadata.get("low_open", False),
                  choices=f.metadata.get("choices", ()))
    for f in _CORE_FIELDS}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CellConfig)}
# Settings added after the first published results (see CellConfig.cell_id). Append new
# settings here; never remove one.
LATE_FIELDS: tuple[str, ...] = ("conv_norm", "conv_inh", "conv_learning", "level_settings",
                                 "curve_every", "color", "preprocess")


def _level_param(name: str) -> Param | None:
    found = registry.level_params().get(name)
    return None if found is None else found[0]


def choices(key: str) -> tuple[str, ...]:
    """Allowed values of a categorical setting (registry levels, plugins included).

    >>> choices("neuron")[:3]
    ('if', 'lif', 'adaptive')
    """
    if key in REGISTRY_AXES:
        return registry.names(key)
    return SETTINGS[key].choices


def declaration(key: str) -> Param | None:
    """The declaration of setting ``key``: a core field's or a level's; None if unknown."""
    return SETTINGS.get(key) or _level_param(key)


def make_cell(settings: dict[str, Any]) -> CellConfig:
    """A :class:`CellConfig` from already validated settings, core and level alike.

    >>> make_cell({"rule": "stdp", "inh": 60.0}).inh
    60.0
    """
    core = {k: v for k, v in settings.items() if k in SETTINGS}
    encoder = registry.get("encoder", core.get("encoder", SETTINGS["encoder"].default))
    dataset = registry.get("dataset", core.get("dataset", SETTINGS["dataset"].default))
    if "time" not in core and encoder.events and dataset.events:
        # An events-encoded presentation lasts the recording unless told otherwise.
        core["time"] = math.ceil(dataset.duration_ms)
    extra = {}
    for key, value in settings.items():
        if key in SETTINGS:
            continue
        declared = _level_param(key)
        if declared is None:
            raise ConfigError(f"unknown setting '{key}'")
        if value != declared.default:
            extra[key] = value
    return CellConfig(**core, level_settings=tuple(sorted(extra.items())))


def with_settings(cfg: CellConfig, **changes: Any) -> CellConfig:
    """``cfg`` with ``changes`` applied (the level-aware ``dataclasses.replace``)."""
    current = {f.name: getattr(cfg, f.name) for f in _CORE_FIELDS}
    current.update(dict(cfg.level_settings))
    current.update(changes)
    return make_cell(current)


# What a neuron level's parameters must hold for the conv / local feature maps, which
# simulate integrate-and-fire neurons with winner-take-all per location themselves.
IF_PARAMS = ("thresh", "reset", "refrac")


def integrate_and_fire_params(cfg: CellConfig) -> dict[str, float]:
    """The neuron level's parameters, checked to describe an integrate-and-fire neuron
    (threshold, reset, refractory period; optionally leak and adaptation).

    >>> sorted(integrate_and_fire_params(CellConfig(neuron="lif")))
    ['decay', 'dt', 'refrac', 'reset', 'rest', 'thresh']
    """
    level = registry.get("neuron", cfg.neuron)
    module = registry.module(level)
    p = module.kernel_params(cfg) if hasattr(module, "kernel_params") else {}
    missing = [k for k in IF_PARAMS if k not in p]
    if missing:
        raise ConfigError(f"neuron = {cfg.neuron!r} is not an integrate-and-fire level "
                          f"(its parameters lack {', '.join(missing)}); conv and local "
                          "layers need one")
    return p


def check_cell(cfg: CellConfig, where: str = "cell") -> None:
    """Reject combinations of settings that no engine can run, naming them."""
    arch = registry.get("architecture", cfg.architecture)
    if cfg.family not in arch.families:
        allowed = [a.name for a in registry.levels("architecture") if cfg.family in a.families]
        raise ConfigError(
            f"{where}: architecture = {cfg.architecture!r} cannot be built by family = "
            f"{cfg.family!r}; allowed for {cfg.family}: {', '.join(allowed)}")
    if cfg.wmin > cfg.wmax:
        raise ConfigError(f"{where}: wmin = {cfg.wmin!r} is above wmax = {cfg.wmax!r}; "
                          "wmin must be at most wmax")
    steps = cfg.time / cfg.dt
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
        raise ConfigError(f"{where}: time = {cfg.time!r} is not a multiple of dt = "
                          f"{cfg.dt!r}; a presentation must be a whole number of steps")
    from stdp_bench.trainers import trainer_of  # trainers read this module's settings

    trainer = trainer_of(cfg)
    if cfg.curve_every and not trainer.curve:
        allowed = [a.name for a in registry.levels("architecture")
                   if registry.load_ref(a.trainer, a.name).curve]
        raise ConfigError(f"{where}: curve_every = {cfg.curve_every} (a learning curve) is "
                          f"not available for architecture = {cfg.architecture!r}; "
                          f"allowed for: {', '.join(allowed)}")
    encoder = registry.get("encoder", cfg.encoder)
    _check_data(cfg, encoder, where)
    if cfg.family == "stdp" and encoder.gradient_only:
        allowed = [e.name for e in registry.levels("encoder") if not e.gradient_only]
        raise ConfigError(
            f"{where}: encoder = {cfg.encoder!r} is for gradient-trained baselines only; "
            f"allowed for stdp: {', '.join(allowed)}")
    trainer.check(cfg, where)


def _check_data(cfg: CellConfig, encoder: Level, where: str) -> None:
    """Reject a dataset the encoder cannot read, or a front end the dataset cannot take."""
    dataset = registry.get("dataset", cfg.dataset)
    event_sets = [d.name for d in registry.levels("dataset") if d.events]
    if encoder.events and not dataset.events:
        raise ConfigError(f"{where}: encoder = {cfg.encoder!r} feeds recorded events; "
                          f"dataset = {cfg.dataset!r} holds images (event datasets: "
                          f"{', '.join(event_sets)})")
    if encoder.events and cfg.family != "stdp":
        raise ConfigError(f"{where}: encoder = {cfg.encoder!r} is for the spiking STDP "
                          f"networks; family = {cfg.family!r} reads an event dataset as "
                          "frames with encoder = 'direct'")
    if dataset.events and not encoder.events and not encoder.gradient_only:
        allowed = [e.name for e in registry.levels("encoder") if e.events]
        raise ConfigError(f"{where}: dataset = {cfg.dataset!r} holds event recordings, "
                          f"which encoder = {cfg.encoder!r} cannot encode; allowed: "
                          f"{', '.join(allowed)}")
    if dataset.events and cfg.preprocess != "none":
        raise ConfigError(f"{where}: preprocess = {cfg.preprocess!r} filters images; "
                          f"dataset = {cfg.dataset!r} holds event recordings (use 'none')")
    if cfg.color == "rgb" and dataset.shape[:1] != (3,):
        colour = [d.name for d in registry.levels("dataset") if d.shape[:1] == (3,)]
        raise ConfigError(f"{where}: color = 'rgb' needs a colour dataset "
                          f"({', '.join(colour)}); dataset = {cfg.dataset!r} is grey")


@dataclass(frozen=True)
class GridSpec:
    """A validated grid: fixed settings plus factors with their levels (in file order)."""

    name: str
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    factors: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # The ``[search]`` table as written; ``stdp-bench tune`` validates it
    # (:func:`stdp_bench.search_space.parse_search`), ``run`` does not read it.
    search: dict[str, Any] = field(default_factory=dict)
    # Level modules imported before validation (``plugins = ["module"]``).
    plugins: tuple[str, ...] = ()
    # Combinations left out of the product: each entry maps factors to the levels it
    # drops (``exclude = [{n_neurons = 6400, seed = [1, 2]}]``).
    exclude: tuple[dict[str, tuple[Any, ...]], ...] = ()

    def excludes(self, levels: dict[str, Any]) -> bool:
        """Whether a cell with these factor levels is left out by ``exclude``."""
        return any(all(levels[k] in vs for k, vs in entry.items()) for entry in self.exclude)

    def to_toml_dict(self) -> dict[str, Any]:
        """The grid as it would be written back to TOML."""
        out = {"name": self.name, "description": self.description,
               "settings": dict(self.settings),
               "factors": {k: list(v) for k, v in self.factors.items()}}
        if self.search:
            out["search"] = self.search
        if self.plugins:
            out["plugins"] = list(self.plugins)
        if self.exclude:
            out["exclude"] = [{k: list(v) for k, v in e.items()} for e in self.exclude]
        return out


def check_value(key: str, value: Any, where: str) -> Any:
    """Validate one setting value against its declaration and return it coerced.

    >>> check_value("inh", float("inf"), "--set inh=inf")
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: --set inh=inf: 'inh' = inf must be a finite number
    """
    declared = declaration(key)
    if declared is None:
        known = sorted(set(SETTINGS) | set(registry.level_params()))
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ConfigError(
            f"{where}: unknown setting '{key}'; {hint}allowed: {', '.join(known)}")
    value = declared.check(value, where)
    if key in REGISTRY_AXES and value not in registry.names(key):
        raise ConfigError(f"{where}: '{key}' = {value!r} is not allowed; "
                          f"allowed: {', '.join(registry.names(key))}")
    return value


def parse_grid(data: dict[str, Any], source: str = "grid") -> GridSpec:
    """Validate a grid read from TOML (or built in code)."""
    allowed_top = {"name", "description", "plugins", "settings", "factors", "exclude",
                   "search"}
    for key in data:
        if key not in allowed_top:
            raise ConfigError(
                f"{source}: unknown top-level key '{key}'; allowed: {', '.join(sorted(allowed_top))}")
    name = data.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise ConfigError(f"{source}: 'name' = {name!r} must be a non-empty string without "
                          "spaces or slashes")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(m, str) and m for m in plugins):
        raise ConfigError(f"{source}: 'plugins' = {plugins!r} must be a list of module names")
    # Before the settings: a plugin's levels and settings must be known to validate them.
    registry.load_plugins(plugins, where=f"{source} plugins")
    settings_raw = data.get("settings", {})
    factors_raw = data.get("factors", {})
    if not isinstance(settings_raw, dict):
        raise ConfigError(f"{source}: 'settings' must be a table")
    if not isinstance(factors_raw, dict):
        raise ConfigError(f"{source}: 'factors' must be a table")
    search_raw = data.get("search", {})
    if not isinstance(search_raw, dict):
        raise ConfigError(f"{source}: 'search' must be a table")
    settings = {k: check_value(k, v, f"{source} [settings]") for k, v in settings_raw.items()}
    factors: dict[str, tuple[Any, ...]] = {}
    for key, levels in factors_raw.items():
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{source} [factors]: '{key}' = {levels!r} must be a non-empty list")
        checked = tuple(check_value(key, v, f"{source} [factors]") for v in levels)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"{source} [factors]: '{key}' = {levels!r} repeats a level")
        if key in settings:
            raise ConfigError(f"{source}: '{key}' is both a setting and a factor")
        factors[key] = checked
    return GridSpec(name=name, description=str(data.get("description", "")),
                    settings=settings, factors=factors, search=search_raw,
                    plugins=tuple(plugins),
                    exclude=parse_exclude(data.get("exclude", []), factors, source))


def parse_exclude(raw: Any, factors: dict[str, tuple[Any, ...]], source: str = "grid"
                  ) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """Validate ``exclude = [{factor = level or [levels], ...}, ...]``: each entry drops
    the cells whose levels match it on every factor it names.

    >>> parse_exclude([{"n_neurons": 6400, "seed": [1, 2]}],
    ...               {"n_neurons": (1600, 6400), "seed": (0, 1, 2)})
    ({'n_neurons': (6400,), 'seed': (1, 2)},)
    >>> parse_exclude([{"seed": 3}], {"seed": (0, 1, 2)})
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: grid exclude[0]: seed = 3 is not a level of the factor; levels: 0, 1, 2
    """
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'exclude' = {raw!r} must be a list of tables")
    entries = []
    for k, entry in enumerate(raw):
        where = f"{source} exclude[{k}]"
        if not isinstance(entry, dict) or not entry:
            raise ConfigError(f"{where}: {entry!r} must be a non-empty table of factor = "
                              "level (or list of levels)")
        checked = {}
        for key, value in entry.items():
            if key not in factors:
                raise ConfigError(f"{where}: '{key}' is not a factor; factors: "
                                  f"{', '.join(factors) or '(none)'}")
            values = value if isinstance(value, list) else [value]
            levels = factors[key]
            for v in values:
                if check_value(key, v, where) not in levels:
                    raise ConfigError(f"{where}: {key} = {v!r} is not a level of the factor; "
                                      f"levels: {', '.join(map(str, levels))}")
            checked[key] = tuple(check_value(key, v, where) for v in values)
        entries.append(checked)
    return tuple(entries)


def grids_dir() -> Path:
    """Folder of the grid files shipped with the package."""
    return Path(str(resources.files("stdp_bench") / "grids"))


def resolve_grid_path(grid: str) -> Path:
    """A path, or the name of a shipped grid (``smoke``, ``classic``, ...)."""
    path = Path(grid)
    if path.exists():
        return path
    shipped = grids_dir() / f"{grid.removesuffix('.toml')}.toml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in grids_dir().glob("*.toml")))
    raise ConfigError(f"grid '{grid}' is neither a file nor a shipped grid ({names})")


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return parse_grid(data, source=str(path))


def _parse_scalar(text: str) -> Any:
    """Read an override value the way TOML would (numbers, booleans, strings, lists)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # bare word, e.g. rule=none


def apply_overrides(grid: GridSpec, overrides: list[str]) -> GridSpec:
    """Apply ``KEY=VALUE`` overrides: a setting is replaced, a factor is pinned to levels.

    A list value (``seed=[0,1,2]``) makes the key a factor with those levels.
    """
    settings = dict(grid.settings)
    factors = dict(grid.factors)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set '{item}' must look like KEY=VALUE")
        key, text = (s.strip() for s in item.split("=", 1))
        value = _parse_scalar(text)
        where = f"--set {item}"
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{where}: '{key}' = [] has no levels; a factor needs at "
                                  "least one")
            factors[key] = tuple(check_value(key, v, where) for v in value)
            settings.pop(key, None)
        else:
            settings[key] = check_value(key, value, where)
            factors.pop(key, None)
    return GridSpec(name=grid.name, description=grid.description, settings=settings,
                    factors=factors, search=grid.search, plugins=grid.plugins,
                    exclude=_restrict_exclude(grid.exclude, settings, factors))


def _restrict_exclude(exclude: tuple[dict[str, tuple[Any, ...]], ...],
                      settings: dict[str, Any], factors: dict[str, tuple[Any, ...]]
                      ) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """``exclude`` entries after overrides: a condition on a factor now pinned to one
    value holds or fails outright; an entry with a failed condition can never match."""
    kept = []
    for entry in exclude:
        out: dict[str, tuple[Any, ...]] = {}
        for key, levels in entry.items():
            if key in factors:
                out[key] = tuple(v for v in levels if v in factors[key])
                if not out[key]:
                    break
            elif settings.get(key) not in levels:
                break
        else:
            kept.append(out)
    return tuple(kept)
