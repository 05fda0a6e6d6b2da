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
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# Allowed levels of the categorical axes. Each module that implements an axis asserts at
# import time that its registry matches the list here (see tests/test_config.py), so the
# validator never needs to import torch or numba.
CHOICES: dict[str, tuple[str, ...]] = {
    "family": ("stdp", "ann", "surrogate"),
    "architecture": ("dc2015", "conv", "local", "mlp", "cnn"),
    "dataset": ("digits", "mnist"),
    "split": ("test", "validation"),
    "label_source": ("heldout", "train"),
    "encoder": ("poisson", "bernoulli", "rank_order", "direct"),
    "neuron": ("if", "lif", "adaptive"),
    "rule": ("stdp", "weight_dependent", "hebbian", "teacher", "none"),
    "conv_learning": ("every_spike", "first_spike"),
}

# Settings that count things: they must be >= 1 (or >= 0 where listed in NON_NEGATIVE).
POSITIVE_INTS = {"n_neurons", "time", "n_train", "n_label", "n_test", "epochs", "ngram_n",
                 "kernel_size", "stride", "n_filters", "pool", "winners", "batch_size"}
POSITIVE_FLOATS = {"dt", "lr", "conv_norm", "surrogate_slope", "intensity_hz", "tc_decay_ms",
                   "tc_trace_ms", "inh_tc_decay_ms", "tc_theta_decay_ms"}
NON_NEGATIVE = {"min_spikes", "max_retries", "seed", "conv_inh", "inh", "exc", "norm",
                "nu_pre", "nu_post", "teacher_drive_mv", "mem_reg", "theta_plus"}
# Guards against typos that would run for days or exhaust memory.
UPPER_BOUNDS = {"n_neurons": 100_000, "time": 100_000, "n_train": 10_000_000,
                "n_label": 10_000_000, "n_test": 10_000_000, "epochs": 1000}


@dataclass(frozen=True)
class CellConfig:
    """Every setting of one grid cell. Defaults follow BindsNET's ``DiehlAndCook2015``."""

    # What is compared.
    family: str = "stdp"
    architecture: str = "dc2015"
    encoder: str = "poisson"
    neuron: str = "adaptive"
    rule: str = "stdp"
    # Data and protocol.
    dataset: str = "mnist"
    split: str = "test"
    # Where the labelling samples come from: "heldout" (disjoint from training) or "train"
    # (the last n_label training samples, seen again with plasticity off, as Diehl & Cook
    # label on training data; this lets n_train use the whole training split).
    label_source: str = "heldout"
    n_train: int = 1000
    n_label: int = 1000
    n_test: int = 1000
    epochs: int = 1
    seed: int = 0
    # Network size and simulation.
    n_neurons: int = 100
    time: int = 250
    dt: float = 1.0
    # Encoding: maximum rate of the brightest pixel; Bernoulli matches it per step.
    intensity_hz: float = 128.0
    # Input current gain; 0 picks the encoder's own default (see encoders.ENCODER_GAIN).
    input_gain: float = 0.0
    # Diehl & Cook presentation retry: fewer than min_spikes excitatory spikes -> show the
    # sample again with the rate raised by retry_rate_step_hz (0 disables).
    min_spikes: int = 0
    retry_rate_step_hz: float = 32.0
    max_retries: int = 5
    # Connectivity.
    exc: float = 22.5
    inh: float = 120.0
    w_init_max: float = 0.3
    wmin: float = 0.0
    wmax: float = 1.0
    norm: float = 78.4
    # Learning rule coefficients.
    nu_pre: float = 1e-4
    nu_post: float = 1e-2
    tc_trace_ms: float = 20.0
    # Teacher: depolarisation added each step to the neurons of the sample's class.
    teacher_drive_mv: float = 0.25
    # Excitatory neurons.
    thresh_mv: float = -52.0
    rest_mv: float = -65.0
    reset_mv: float = -60.0
    refrac_ms: float = 5.0
    tc_decay_ms: float = 100.0
    theta_plus: float = 0.05
    tc_theta_decay_ms: float = 1e7
    one_spike: bool = True
    # Inhibitory neurons.
    inh_thresh_mv: float = -40.0
    inh_rest_mv: float = -60.0
    inh_reset_mv: float = -45.0
    inh_refrac_ms: float = 2.0
    inh_tc_decay_ms: float = 10.0
    # Readouts.
    ngram_n: int = 2
    # Convolutional / locally connected layers (architecture conv, local, cnn).
    kernel_size: int = 12
    stride: int = 4
    n_filters: int = 25
    pool: int = 1
    winners: int = 1
    # Total input weight per filter (conv) or per neuron (local), and the inhibition
    # between feature maps at one location.
    conv_norm: float = 10.0
    conv_inh: float = 5.0
    # Which spikes of a conv / local layer learn: "every_spike" (BindsNET's rules as they
    # are) or "first_spike" (Kheradpisheh et al. 2018: each filter once per image, at its
    # first spike, claiming that place; see networks/first_spike.py). dc2015 ignores it.
    conv_learning: str = "every_spike"
    # Gradient-trained baselines (family ann, surrogate).
    batch_size: int = 128
    lr: float = 1e-3
    surrogate_slope: float = 25.0
    surrogate_beta: float = 0.9
    mem_reg: float = 0.0

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
        """All settings as a plain dict."""
        return dataclasses.asdict(self)


FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(CellConfig)}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CellConfig)}
# Settings added after the first published results (see CellConfig.cell_id). Append new
# settings here; never remove one.
LATE_FIELDS: tuple[str, ...] = ("conv_norm", "conv_inh", "conv_learning")

# Architectures each family can build, and encoders only some families accept.
FAMILY_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "stdp": ("dc2015", "conv", "local"),
    "ann": ("mlp", "cnn"),
    "surrogate": ("mlp", "cnn"),
}
GRADIENT_ONLY_ENCODERS = ("direct",)


def check_cell(cfg: CellConfig, where: str = "cell") -> None:
    """Reject combinations of levels that no engine can run, naming the levels."""
    allowed = FAMILY_ARCHITECTURES[cfg.family]
    if cfg.architecture not in allowed:
        raise ConfigError(
            f"{where}: architecture = {cfg.architecture!r} cannot be built by family = "
            f"{cfg.family!r}; allowed for {cfg.family}: {', '.join(allowed)}")
    if cfg.architecture in ("conv", "local"):
        for key, bad, why in (("rule", "teacher", "its class gate needs the dc2015 layout"),
                              ("encoder", "rank_order", "its input gain needs the replica "
                                                        "engine")):
            if getattr(cfg, key) == bad:
                raise ConfigError(f"{where}: {key} = {bad!r} is not available for "
                                  f"architecture = {cfg.architecture!r} ({why})")
        if cfg.min_spikes > 0:
            raise ConfigError(f"{where}: min_spikes = {cfg.min_spikes} (retries) is not "
                              f"available for architecture = {cfg.architecture!r}; use 0")
    if cfg.family == "stdp" and cfg.encoder in GRADIENT_ONLY_ENCODERS:
        raise ConfigError(
            f"{where}: encoder = {cfg.encoder!r} is for gradient-trained baselines only; "
            f"allowed for stdp: {', '.join(e for e in CHOICES['encoder'] if e not in GRADIENT_ONLY_ENCODERS)}")


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

    def to_toml_dict(self) -> dict[str, Any]:
        """The grid as it would be written back to TOML."""
        out = {"name": self.name, "description": self.description,
               "settings": dict(self.settings),
               "factors": {k: list(v) for k, v in self.factors.items()}}
        if self.search:
            out["search"] = self.search
        return out


class ConfigError(ValueError):
    """A grid file or override that cannot be run; the message names the problem."""


def check_value(key: str, value: Any, where: str) -> Any:
    """Validate one setting value and return it coerced to the field's type."""
    if key not in FIELD_TYPES:
        close = difflib.get_close_matches(key, FIELD_TYPES, n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ConfigError(
            f"{where}: unknown setting '{key}'; {hint}allowed: {', '.join(sorted(FIELD_TYPES))}")
    want = FIELD_TYPES[key]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' = {value!r} must be true or false")
    if want is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: '{key}' = {value!r} must be an integer")
    if want is float and not isinstance(value, float):
        raise ConfigError(f"{where}: '{key}' = {value!r} must be a number")
    if want is str and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' = {value!r} must be a string")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(
            f"{where}: '{key}' = {value!r} is not allowed; allowed: {', '.join(CHOICES[key])}")
    if key in POSITIVE_INTS and value < 1:
        raise ConfigError(f"{where}: '{key}' = {value!r} must be at least 1")
    if key in POSITIVE_FLOATS and not value > 0:
        raise ConfigError(f"{where}: '{key}' = {value!r} must be positive")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{where}: '{key}' = {value!r} must not be negative")
    if key in UPPER_BOUNDS and value > UPPER_BOUNDS[key]:
        raise ConfigError(
            f"{where}: '{key}' = {value!r} is absurdly large (at most {UPPER_BOUNDS[key]})")
    if want is float and value != value:  # NaN
        raise ConfigError(f"{where}: '{key}' = nan is not a number")
    return value


def parse_grid(data: dict[str, Any], source: str = "grid") -> GridSpec:
    """Validate a grid read from TOML (or built in code)."""
    allowed_top = {"name", "description", "settings", "factors", "search"}
    for key in data:
        if key not in allowed_top:
            raise ConfigError(
                f"{source}: unknown top-level key '{key}'; allowed: {', '.join(sorted(allowed_top))}")
    name = data.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise ConfigError(f"{source}: 'name' = {name!r} must be a non-empty string without "
                          "spaces or slashes")
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
                    settings=settings, factors=factors, search=search_raw)


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
            factors[key] = tuple(check_value(key, v, where) for v in value)
            settings.pop(key, None)
        else:
            settings[key] = check_value(key, value, where)
            factors.pop(key, None)
    return GridSpec(name=grid.name, description=grid.description, settings=settings,
                    factors=factors, search=grid.search)
