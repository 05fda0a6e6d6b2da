"""The ``[search]`` table of a grid file: what ``stdp-bench tune`` searches, validated.

A grid's ``[factors]`` (other than ``seed``) define the cells; ``[search]`` says how each
cell is tuned on a validation split carved from the training data, and
``[search.space]`` which settings are searched, each a float or integer range
(``{low, high, log}``) or a list of ``{choices}``. Every bound and choice is checked
like any other value of that setting, and the grid's own value of each searched
setting must lie in its range, since trial 0 of every cell runs the grid's own
settings. Needs neither torch nor numba.

>>> from stdp_bench.grid_file import parse_grid
>>> grid = parse_grid({"name": "g", "factors": {"neuron": ["lif"], "seed": [0, 1]},
...                    "search": {"trials": 4, "rungs": [100, 300],
...                               "space": {"inh": {"low": 20.0, "high": 500.0, "log": True},
...                                         "time": {"choices": [100, 250]}}}})
>>> spec = parse_search(grid)
>>> spec.trials, spec.rungs, sorted(spec.space)
(4, (100, 300), ['inh', 'time'])
>>> parse_search(parse_grid({"name": "g", "search": {"space": {"inh": {"low": 5.0,
...     "high": 1.0}}}}))
Traceback (most recent call last):
...
stdp_bench.levels.spec.ConfigError: g [search.space]: 'inh' has low = 5.0 >= high = 1.0; low must be below high
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from stdp_bench.config import CellConfig, ConfigError, check_value, declaration
from stdp_bench.grid import expand
from stdp_bench.grid_file import GridSpec
from stdp_bench.levels import registry
from stdp_bench.trainers import trainer_of

# Settings that fix the protocol of a trial (its data, split, size of each set, seed)
# or what is being compared: the tuner sets them itself, or they are the cells.
NOT_SEARCHABLE = ("family", "architecture", "dataset", "split", "label_source", "n_train",
                  "n_label", "n_test", "epochs", "seed", "dt", "ngram_n")
SEARCH_KEYS = ("trials", "metric", "rungs", "n_label", "n_val", "seed", "batch", "space")


@dataclass(frozen=True)
class Range:
    """A float or integer interval of one setting, sampled uniformly or on a log scale."""

    low: float | int
    high: float | int
    log: bool = False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in ``[low, high]``."""
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class Choices:
    """A finite list of levels of one setting."""

    values: tuple[Any, ...]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the levels."""
        return value in self.values


Space = Union[Range, Choices]


@dataclass(frozen=True)
class SearchSpec:
    """A validated ``[search]`` table (see the module docstring for the file form)."""

    trials: int = 32  # per cell, trial 0 (the grid's own settings) included
    metric: str = "proportion_weighting"  # readout maximised on the validation split
    rungs: tuple[int, ...] = (500, 2000)  # training samples at which trials are scored
    n_label: int = 1000  # labelling samples of a trial, disjoint from its training ones
    n_val: int = 1000  # validation samples, carved from the training split
    seed: int = 1000  # seed of every trial's network and of the samplers
    batch: int = 8  # trials asked from each cell's study per round
    space: dict[str, Space] = field(default_factory=dict)

    def trial_config(self, cell: CellConfig, params: dict[str, Any]) -> CellConfig:
        """A trial's settings: the cell with ``params``, on the tuning protocol.

        Trials train on the first ``rungs[-1]`` samples of their training subset, label
        on ``n_label`` held-out training samples and are scored on ``n_val`` more, all
        drawn from the training split with ``seed``: the test split is never read.
        """
        return cell.with_settings(**params, split="validation", label_source="heldout",
                             n_train=self.rungs[-1], n_label=self.n_label,
                             n_test=self.n_val, epochs=1, seed=self.seed)


def _where(source: str, table: str = "search") -> str:
    return f"{source} [{table}]"


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: '{key}' = {value!r} must be an integer of at least 1")
    return value


def _parse_space(key: str, raw: Any, where: str) -> Space:
    declared = declaration(key)
    if declared is None:
        check_value(key, None, where)  # raises the unknown-setting message with hints
    if key in NOT_SEARCHABLE:
        raise ConfigError(f"{where}: '{key}' cannot be searched (the tuner sets it, or it "
                          f"defines the cells); not searchable: {', '.join(NOT_SEARCHABLE)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{key}' = {raw!r} must be a table: {{low, high, log}} "
                          "or {choices = [...]}")
    if "choices" in raw:
        extra = set(raw) - {"choices"}
        if extra:
            raise ConfigError(f"{where}: '{key}' has choices and {', '.join(sorted(extra))}; "
                              "give either {choices} or {low, high, log}")
        levels = raw["choices"]
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{where}: '{key}' choices = {levels!r} must be a non-empty list")
        checked = tuple(check_value(key, v, where) for v in levels)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"{where}: '{key}' choices = {levels!r} repeats a level")
        return Choices(checked)
    unknown = set(raw) - {"low", "high", "log"}
    if unknown or "low" not in raw or "high" not in raw:
        raise ConfigError(f"{where}: '{key}' = {raw!r} must have low and high (and "
                          "optionally log), or choices")
    if declared.type not in (int, float):
        raise ConfigError(f"{where}: '{key}' is a {declared.type.__name__} setting; "
                          "search it with {choices = [...]}")
    low = check_value(key, raw["low"], where)
    high = check_value(key, raw["high"], where)
    for name, v in (("low", low), ("high", high)):
        if not math.isfinite(v):
            raise ConfigError(f"{where}: '{key}' has {name} = {v!r}; bounds must be finite")
    if low >= high:
        raise ConfigError(f"{where}: '{key}' has low = {low!r} >= high = {high!r}; low "
                          "must be below high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: '{key}' log = {log!r} must be true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}: '{key}' has log = true and low = {low!r}; a log "
                          "scale needs low > 0")
    return Range(low, high, log)


def parse_search(grid: GridSpec, source: str | None = None) -> SearchSpec:
    """Validate ``grid.search``; errors name the key, the value and what is allowed."""
    source = source or grid.name
    raw = grid.search
    where = _where(source)
    if not raw:
        raise ConfigError(f"{source}: no [search] table; stdp-bench tune needs one (see "
                          "grids/factorial_tuned.toml)")
    for key in raw:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'; allowed: {', '.join(SEARCH_KEYS)}")
    defaults = SearchSpec()
    trials = _positive_int(raw.get("trials", defaults.trials), "trials", where)
    batch = _positive_int(raw.get("batch", defaults.batch), "batch", where)
    n_label = _positive_int(raw.get("n_label", defaults.n_label), "n_label", where)
    n_val = _positive_int(raw.get("n_val", defaults.n_val), "n_val", where)
    seed = raw.get("seed", defaults.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: 'seed' = {seed!r} must be a non-negative integer")
    metric = raw.get("metric", defaults.metric)
    if metric not in registry.names("readout"):
        raise ConfigError(f"{where}: 'metric' = {metric!r} is not a readout; allowed: "
                          f"{', '.join(registry.names('readout'))}")
    rungs = raw.get("rungs", list(defaults.rungs))
    if not isinstance(rungs, list) or not rungs:
        raise ConfigError(f"{where}: 'rungs' = {rungs!r} must be a non-empty list of "
                          "training-sample counts")
    for r in rungs:
        _positive_int(r, "rungs", where)
    if any(b <= a for a, b in zip(rungs, rungs[1:])):
        raise ConfigError(f"{where}: 'rungs' = {rungs!r} must increase strictly")
    space_raw = raw.get("space", {})
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(f"{where}: 'space' must be a non-empty table of searched settings")
    space_where = _where(source, "search.space")
    space = {}
    for key, spec in space_raw.items():
        if key in grid.factors:
            raise ConfigError(f"{space_where}: '{key}' is both a factor and searched; "
                              "search it or make it a factor, not both")
        space[key] = _parse_space(key, spec, space_where)
    spec = SearchSpec(trials=trials, metric=metric, rungs=tuple(rungs), n_label=n_label,
                      n_val=n_val, seed=seed, batch=batch, space=space)
    _check_cells(grid, spec, source)
    return spec


def _check_cells(grid: GridSpec, spec: SearchSpec, source: str) -> None:
    """Every cell's engine must continue training from a rung (trials train rung by
    rung), and its own values must lie inside the space."""
    for cell in expand(grid):
        cfg = cell.config
        if not trainer_of(cfg).resumable:
            allowed = [a.name for a in registry.levels("architecture")
                       if registry.load_ref(a.trainer, a.name).resumable]
            raise ConfigError(
                f"{source}: tune trains trials rung by rung, continuing each from its "
                f"state; cell {dict(cell.levels)} (architecture = {cfg.architecture!r}) "
                f"trains in one call; allowed: {', '.join(allowed)}")
        for key, dom in spec.space.items():
            value = getattr(cfg, key)
            if not dom.contains(value):
                raise ConfigError(
                    f"{_where(source, 'search.space')}: the grid's own '{key}' = {value!r} "
                    f"lies outside the searched {_describe(dom)}; trial 0 of every cell "
                    "runs the grid's own settings, so widen the space or change the setting")


def _describe(dom: Space) -> str:
    if isinstance(dom, Choices):
        return f"choices {list(dom.values)}"
    return f"range [{dom.low}, {dom.high}]"
