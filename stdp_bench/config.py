"""Cell configuration: every setting of a grid cell, declared once, validated at the edge.

:class:`CellConfig` is a frozen dataclass whose fields declare what they accept
(:func:`setting`); :data:`SETTINGS` holds those declarations, levels add their own
(``Level.params``), and :func:`check_value` validates one value against either.

Grid files are read in :mod:`stdp_bench.grid_file`, ``--set`` overrides applied in
:mod:`stdp_bench.overrides`, and combinations no engine can run rejected in
:mod:`stdp_bench.cell_checks`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from stdp_bench.levels import registry
from stdp_bench.levels.spec import ConfigError, Param

__all__ = ["CellConfig", "ConfigError", "LATE_FIELDS", "REGISTRY_AXES", "SETTINGS",
           "check_value", "choices", "declaration", "make_cell", "setting"]

# Axes whose levels come from the registries (stdp_bench.levels.registry).
REGISTRY_AXES = ("architecture", "dataset", "encoder", "neuron", "rule")


def setting(default: Any, *, unit: str = "", low: float | None = None,
            high: float | None = None, low_open: bool = False,
            choices: tuple[str, ...] = (), dtype: str = "") -> Any:
    """A :class:`CellConfig` field whose metadata declares what it accepts.

    The declaration becomes a :class:`~stdp_bench.levels.spec.Param` in :data:`SETTINGS`;
    ``check_value`` validates against it, ``stdp-bench levels`` lists it. ``dtype`` names
    the number type the engines hold it in when it is not the usual
    (:data:`~stdp_bench.levels.spec.ENGINE_DTYPES`).
    """
    return field(default=default, metadata={"unit": unit, "low": low, "high": high,
                                            "low_open": low_open, "choices": choices,
                                            "dtype": dtype})


# Guards against typos that would run for days or exhaust memory.
_HUGE = 10_000_000
POS = {"low": 0.0, "low_open": True}  # strictly positive
# The torch engines key a presentation's random stream by its retry attempt shifted
# above 40 bits of sample position in an int64 (engine.torch_engine._key): 23 bits left.
_MAX_RETRIES = 2 ** 23 - 1


@dataclass(frozen=True)
class CellConfig:
    """Every setting of one grid cell. Defaults follow BindsNET's ``DiehlAndCook2015``.

    Settings that a level declares (``Level.params``, e.g. triplet's ``tc_post2_ms``)
    live in ``level_settings`` and read as attributes like the others; build cells with
    :func:`make_cell` and copy them with :meth:`with_settings`, which sort the two apart.

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
    # channels (stdp_bench/preprocess.py); "dog_k2018" is Kheradpisheh et al.'s front end
    # (their DoG kernels, threshold and local normalisation); "dog_m2019" is Mozafari et
    # al.'s (six DoG channels at three scales); "none" feeds the pixels.
    preprocess: str = setting("none", choices=("none", "dog", "dog_k2018", "dog_m2019"))
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
    # Thresholds settle before the network is frozen: this many training samples (the
    # first of the training order) are shown with the weights frozen and adaptive
    # thresholds on, before labelling and testing (at every curve point too, on a copy
    # that training does not continue from). 0: Diehl & Cook's freeze as it stands.
    settle: int = setting(0, low=0, high=_HUGE)
    # Thresholds set from the weights at the freeze (after any settling, at every curve
    # point on a copy, as settle): "weight_norm" makes each adaptive neuron's distance
    # from rest to threshold proportional to the L2 norm of its input weights, their mean
    # kept (stdp_bench/threshold_calibration.py); "none": the learned thresholds.
    threshold_calibration: str = setting("none", choices=("none", "weight_norm"))
    # uint32: scikit-learn's random_state (the linear readouts) takes 0 .. 2**32 - 1,
    # and numpy's global seed is taken modulo 2**32, which would make two seeds one.
    seed: int = setting(0, low=0, dtype="uint32")
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
    max_retries: int = setting(5, low=0, high=_MAX_RETRIES)
    # Connectivity. Weights may take either sign (check_cell: wmin <= wmax). w_init_max
    # only scales the initial draw, which normalisation to norm and the rule's clamp to
    # [wmin, wmax] then rescale, so it is not tied to [wmin, wmax].
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
    # Forcing teachers: hyperpolarisation each step of the neurons of the other classes.
    teacher_block_mv: float = setting(10.0, unit="mV", low=0.0)
    # Excitatory neurons. Voltages take any value; an order a neuron level needs (if:
    # reset below threshold) is its Level.orderings, checked per cell.
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
    # First-spike learning's competition (Kheradpisheh et al.'s k winners and inhibition
    # radius): at most conv_kwta maps learn per image (0: every map may, once), and a
    # learning spike claims the places within conv_radius of it in every map (-1: conv,
    # the places whose fields overlap its field by more than half; local, its own).
    conv_kwta: int = setting(0, low=0)
    conv_radius: int = setting(-1, low=-1)
    # Gradient-trained baselines (family ann, surrogate).
    batch_size: int = setting(128, low=1)
    lr: float = setting(1e-3, **POS)
    surrogate_slope: float = setting(25.0, **POS)
    # A per-step decay factor: snnTorch's Leaky clamps it to [0, 1] silently, while the
    # output integrator would use it as written (above 1 it grows without bound).
    surrogate_beta: float = setting(0.9, low=0.0, high=1.0)
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

    def __post_init__(self) -> None:
        # cell_id hashes level_settings as written, so only make_cell's form is accepted:
        # sorted, unique, declared by a level, each off its default. Otherwise a config
        # built without make_cell (the constructor, dataclasses.replace) could give one
        # cell two ids.
        names = [pair[0] for pair in self.level_settings]
        if names != sorted(set(names)):
            raise ConfigError(f"level_settings names {names} must be sorted and unique; "
                              "build cells with make_cell or CellConfig.with_settings")
        for name, value in self.level_settings:
            declared = _level_param(name)
            if declared is None:
                raise ConfigError(f"level_settings: '{name}' is not a setting a level "
                                  f"declares; level settings: "
                                  f"{', '.join(sorted(registry.level_params()))}")
            if value == declared.default:
                raise ConfigError(f"level_settings: '{name}' = {value!r} is its default, "
                                  "which is left out; build cells with make_cell or "
                                  "CellConfig.with_settings")

    def with_settings(self, **changes: Any) -> "CellConfig":
        """A copy with ``changes`` applied, core and level settings alike: the one way to
        copy a config (``dataclasses.replace`` cannot set a level's settings).

        >>> cfg = CellConfig().with_settings(rule="triplet", tc_post2_ms=80.0)
        >>> cfg.tc_post2_ms, cfg.level_settings
        (80.0, (('tc_post2_ms', 80.0),))
        """
        current = {f.name: getattr(self, f.name) for f in _CORE_FIELDS}
        current.update(dict(self.level_settings))
        current.update(changes)
        return make_cell(current)

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
        """All settings as a plain dict, with the settings its own levels declare and
        any other level's setting it sets (a readout's ``svm_c``: no axis of the cell
        names that level, and :func:`make_cell` must get it back)."""
        d = dataclasses.asdict(self)
        del d["level_settings"]
        for axis in REGISTRY_AXES:
            level = registry.get(axis, d[axis])
            for p in level.params:
                d[p.name] = getattr(self, p.name)
        d.update(dict(self.level_settings))
        return d


_CORE_FIELDS = tuple(f for f in fields(CellConfig) if f.name != "level_settings")
# Every core setting's declaration; a setting without metadata accepts any value of its
# type (finite, for floats).
SETTINGS: dict[str, Param] = {
    f.name: Param(f.name, f.default, unit=f.metadata.get("unit", ""),
                  low=f.metadata.get("low"), high=f.metadata.get("high"),
                  low_open=f.metadata.get("low_open", False),
                  choices=f.metadata.get("choices", ()), dtype=f.metadata.get("dtype", ""))
    for f in _CORE_FIELDS}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CellConfig)}
# Settings added after the first published results (see CellConfig.cell_id). Append new
# settings here; never remove one.
LATE_FIELDS: tuple[str, ...] = ("conv_norm", "conv_inh", "conv_learning", "level_settings",
                                 "curve_every", "color", "preprocess", "conv_kwta",
                                 "conv_radius", "teacher_block_mv", "settle",
                                 "threshold_calibration")


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
    if key == "rule" and registry.get("rule", value).decision_rule:
        raise ConfigError(f"{where}: 'rule' = {value!r} learns from a stack's decision "
                          "layer, so a layer table names it (rule = "
                          f"\"{value}\" with decide = true), not a cell")
    return value
