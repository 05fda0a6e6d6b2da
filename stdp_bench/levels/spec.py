"""Declarations of settings and levels: what a parameter accepts, what a level provides.

Nothing here imports torch or numba, so a grid validates in milliseconds. A
:class:`Param` carries its own validity (type, unit, range, finiteness, and the number
type the engines hold it in); grid validation, ``stdp-bench levels`` and the docs read
it from there.

>>> p = Param("tc_decay_ms", 100.0, unit="ms", low=0.0, low_open=True, doc="membrane decay")
>>> p.check(20, "grid [settings]")
20.0
>>> p.check(0.0, "grid [settings]")
Traceback (most recent call last):
...
stdp_bench.levels.spec.ConfigError: grid [settings]: 'tc_decay_ms' = 0.0 must be greater than 0.0 (ms)
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

AXES = ("encoder", "neuron", "rule", "architecture", "readout", "dataset")


class ConfigError(ValueError):
    """A grid file or override that cannot be run; the message names the problem."""


# The number type the engines hold a setting in unless its declaration names another
# (``Param.dtype``): the fused kernel's records and the torch engines keep floats as
# float32; integers reach int64 records, shapes and numpy's seeds.
ENGINE_DTYPES: dict[type, str] = {float: "float32", int: "int64"}
# The largest integer that converts to a finite Python float.
_FLOAT_MAX_INT = int(sys.float_info.max)


class KernelFunction:
    """A plain Python function written in numba's subset, compiled when the kernel is.

    Level modules mark their kernel steps (and helpers the steps call) with
    :func:`kernel_function` instead of ``numba.njit``, so importing a level does not
    import numba; the engine teaches numba to compile these on first use
    (:mod:`stdp_bench.engine.kernel_build`). Called from Python, it runs as written.

    >>> @kernel_function
    ... def twice(x):
    ...     return 2 * x
    >>> twice(3)
    6
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.py_func = fn
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__
        self.__doc__ = fn.__doc__
        self.compiled: Any = None  # the numba dispatcher, set by the engine

    def __call__(self, *args: Any) -> Any:
        return self.py_func(*args)

    def __repr__(self) -> str:
        return f"<kernel function {self.__module__}.{self.__qualname__}>"


def kernel_function(fn: Callable[..., Any]) -> KernelFunction:
    """Mark ``fn`` as numba-compilable kernel code (see :class:`KernelFunction`)."""
    return KernelFunction(fn)


@dataclass(frozen=True)
class Param:
    """One setting: name, default, unit, valid range and a one-line doc.

    ``low``/``high`` bound the value (inclusive, or exclusive with ``low_open``); floats
    must be finite. ``choices`` lists the allowed strings of a categorical setting whose
    levels are not a registry axis. A number must also fit ``dtype``, the numpy type the
    engines hold it in (default :data:`ENGINE_DTYPES`): a float that float32 would turn
    into ``inf`` or ``0`` is refused rather than run as that.

    >>> Param("inh", 120.0).check(1e300, "grid [settings]")
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: grid [settings]: 'inh' = 1e+300 must be at most 3.4028234663852886e+38 (the engine holds it as float32)
    """

    name: str
    default: Any
    unit: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()
    # Numpy type the engines hold the value in; "" takes ENGINE_DTYPES of the type.
    dtype: str = ""
    # A structured setting's reader, ``parse(value, where) -> canonical value``: it
    # validates what a grid file writes (tables, lists) and returns the one hashable
    # form cells keep (a stack's ``layers``); the type check above then applies to that.
    parse: Callable[[Any, str], Any] | None = None

    def __post_init__(self) -> None:
        if not self.dtype:
            return
        kind = {float: "f", int: "iu"}.get(self.type, "")
        if not kind or np.dtype(self.dtype).kind not in kind:
            raise ConfigError(f"setting {self.name!r}: dtype {self.dtype!r} cannot hold its "
                              f"{self.type.__name__} values")

    @property
    def type(self) -> type:
        """The Python type values are coerced to (that of the default)."""
        return type(self.default)

    @property
    def engine_dtype(self) -> str:
        """The numpy type the engines hold this setting in ("" for strings and booleans).

        >>> Param("seed", 0, dtype="uint32").engine_dtype, Param("tc_ms", 1.0).engine_dtype
        ('uint32', 'float32')
        """
        return self.dtype or ENGINE_DTYPES.get(self.type, "")

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise ConfigError."""
        key, want = self.name, self.type
        if self.parse is not None:
            value = self.parse(value, where)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > _FLOAT_MAX_INT:  # float() would raise OverflowError
                raise ConfigError(f"{where}: '{key}' = {value!r} must be a finite number")
            value = float(value)
        if want is bool and not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' = {value!r} must be true or false")
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: '{key}' = {value!r} must be an integer")
        if want is float and not isinstance(value, float):
            raise ConfigError(f"{where}: '{key}' = {value!r} must be a number")
        if want is str and not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' = {value!r} must be a string")
        if want is float and not math.isfinite(value):
            raise ConfigError(f"{where}: '{key}' = {value!r} must be a finite number")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where}: '{key}' = {value!r} is not allowed; "
                              f"allowed: {', '.join(self.choices)}")
        unit = f" ({self.unit})" if self.unit else ""
        if self.low is not None:
            if self.low_open and not value > self.low:
                raise ConfigError(f"{where}: '{key}' = {value!r} must be greater than "
                                  f"{self.low}{unit}")
            if not self.low_open and value < self.low:
                raise ConfigError(f"{where}: '{key}' = {value!r} must be at least "
                                  f"{self.low}{unit}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{where}: '{key}' = {value!r} must be at most {self.high}{unit}")
        if self.engine_dtype:
            self._check_engine_type(value, where)
        return value

    def _check_engine_type(self, value: float | int, where: str) -> None:
        """Refuse a value the engine's number type would hold as another number."""
        dtype = self.engine_dtype
        unit = f" {self.unit}" if self.unit else ""
        held = f" (the engine holds it as {dtype})"
        bad = f"{where}: '{self.name}' = {value!r} must be"
        if isinstance(value, float):
            info = np.finfo(dtype)
            biggest, tiny = float(info.max), float(info.tiny)
            if value > biggest:
                raise ConfigError(f"{bad} at most {biggest}{unit}{held}")
            if value < -biggest:
                raise ConfigError(f"{bad} at least {-biggest}{unit}{held}")
            # Below float32's smallest normal number a value keeps ever fewer significant
            # bits (one at 1.4e-45, below which it is 0): it would reach the engine as
            # another number, or as 0, which switches off what it scales (a rule term
            # with nu_pre = 0). Nothing in these models means anything at 1e-38.
            if value != 0.0 and abs(value) < tiny:
                raise ConfigError(f"{bad} 0 or at least {tiny}{unit} in magnitude{held}")
            return
        info_i = np.iinfo(dtype)
        if value > info_i.max:
            raise ConfigError(f"{bad} at most {info_i.max}{unit}{held}")
        if value < info_i.min:
            raise ConfigError(f"{bad} at least {info_i.min}{unit}{held}")

    def brief(self) -> str:
        """``name = default unit (range)``, as listings show a setting.

        >>> Param("seed", 0, low=0, dtype="uint32").brief()
        'seed = 0 (>= 0, uint32)'
        """
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            bounds.append(f"<= {self.high}")
        if self.dtype and self.dtype != ENGINE_DTYPES.get(self.type):
            bounds.append(self.dtype)
        rng = f" ({', '.join(bounds)})" if bounds else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} = {self.default!r}{unit}{rng}"

    def describe(self) -> str:
        """``name = default unit (range): doc`` for listings.

        >>> Param("tc_ms", 40.0, unit="ms", low=0.0, low_open=True, doc="decay").describe()
        'tc_ms = 40.0 ms (> 0.0): decay'
        """
        return f"{self.brief()}: {self.doc}"


@dataclass(frozen=True)
class Level:
    """One level of one axis, as its module declares it.

    ``params`` are settings this level adds (grids may set them; their values reach the
    level's steps); ``uses`` names shared settings it reads. ``module`` is where the
    level lives; the engines look up the steps there by name:

    * encoder: ``kernel_encode`` (numba), ``dense_encoder`` (BindsNET ``Encoder``),
      ``torch_encode_batch`` (batched trains for the surrogate baselines); ``input_gain``
      when the code's volume differs from Poisson's;
    * neuron: ``kernel_params``, ``kernel_reset``, ``kernel_step`` (numba);
      ``torch_reset``, ``torch_step`` (the replica network); ``stock_layer`` (BindsNET
      ``Nodes``, for parity tests);
    * rule: ``kernel_params``, ``kernel_update`` (numba), ``torch_update`` (the replica
      network, and the conv / local layers' event-driven and first-spike learning),
      ``stock_rule`` (BindsNET's class: parity tests, conv's every-spike learning).
      ``kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active,
      nact, label, n_classes, scratch)`` sees the inputs that fired this step
      (``idx[lo:hi]``), the neurons that fired (``fired[:nfire]``) and those that have
      fired in this presentation (``active[:nact]``; post traces are zero elsewhere).
      It may change W only in those inputs' rows at active columns and in the fired
      neurons' columns: the kernel clamps just these entries to [wmin, wmax].

    * readout: ``predictor`` names its function; architecture: ``trainer`` its class.
    * dataset: ``SOURCES`` (name -> :class:`~stdp_bench.levels.datasets.source.Source`:
      folder and files under the data root, and their reader); a dataset without one
      needs no files (scikit-learn's digits).

    A level without ``kernel_*`` steps cannot run on the fused kernel (``kernel`` is
    False), one without BindsNET twins not on the torch engines (``torch`` is False).
    """

    axis: str
    name: str
    doc: str
    module: str
    params: tuple[Param, ...] = ()
    uses: tuple[str, ...] = ()
    kernel: bool = True
    torch: bool = True
    # Neuron: may keep one of several simultaneous spikes (setting ``one_spike``).
    one_spike: bool = False
    # Neuron: rows of per-neuron state the kernel allocates (row 0 is the membrane).
    state: tuple[str, ...] = ("v",)
    # Neuron: a neuron in its reset state that gets no current keeps its potential (only
    # a refractory countdown may run on), so with frozen thresholds and a negative margin
    # there it never fires: the map kernel's evaluation then leaves the places no input
    # has reached yet out of the neurons' step (the same spikes; see map_kernel).
    rests: bool = False
    # Rule: changes weights at all (``none`` does not), and rows of extra per-neuron
    # traces it keeps (triplet's second post trace).
    plastic: bool = True
    traces: tuple[str, ...] = ()
    # Rule: needs the sample's label (a supervised teacher).
    supervised: bool = False
    # Rule: learns from the outcome of a stack's decision layer (reward on a right
    # decision, punishment on a wrong one), so only a decision layer's table names it
    # (``rule = "rstdp"`` with ``decide = true``), never a cell.
    decision_rule: bool = False
    # Encoder: for gradient-trained baselines only.
    gradient_only: bool = False
    # Encoder: an image always gives the same spikes (no random draws), so a stack may
    # keep what its frozen layers make of each image instead of recomputing it.
    deterministic: bool = False
    # Architecture: the families that build it, and the trainer that runs its cells
    # ("module:Class", a :class:`stdp_bench.trainers.Trainer`, imported when a cell
    # runs). Readout: the families whose cells it scores.
    families: tuple[str, ...] = ()
    trainer: str = ""
    # Readout: its predictor ("module:function", imported when a cell is scored; see
    # :mod:`stdp_bench.readout`), the kinds of response it reads (a cell is scored by
    # every readout whose kinds its trainer provides: "counts", "events", "maps",
    # "outputs"), and whether every cell of its families gets a table row for it even
    # when it has no score (an error cell).
    predictor: str = ""
    reads: tuple[str, ...] = ()
    listed: bool = False
    # Encoder: feeds a recording's own events (``events``), for event datasets only.
    # Dataset: holds event recordings (``events``) of ``duration_ms``, the default
    # presentation time of an events-encoded cell; its input ``shape`` (channels,
    # height, width) and ``n_classes``.
    events: bool = False
    duration_ms: float = 0.0
    shape: tuple[int, ...] = ()
    n_classes: int = 0
    # Settings this level reads that must be strictly ordered, as (lower, upper, why):
    # a cell with lower >= upper is refused (``cell_checks.check_cell``), naming why.
    orderings: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ConfigError(f"level {self.name!r}: axis {self.axis!r} is not one of "
                              f"{', '.join(AXES)}")
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"level {self.name!r}: a name is letters, digits and _")
