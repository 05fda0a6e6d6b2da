"""One registry per axis: the built-in levels plus plugins.

Built-ins are listed below, one line per level module. Plugins are packages that declare
modules in the entry-point group ``stdp_bench.levels``, or modules a grid names in
``plugins = [...]`` (:func:`load_plugins`; a run passes the names to its workers with
each job, ``stdp_bench.backends.JobContext``); each module exposes ``LEVEL`` (one
:class:`~stdp_bench.levels.spec.Level`) or ``LEVELS``. Importing this module imports no
torch and no numba.

>>> names("neuron")[:3]
('if', 'lif', 'adaptive')
>>> get("rule", "stdp").doc
'pair STDP with pre and post traces (BindsNET PostPre)'
>>> get("rule", "nope")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
stdp_bench.levels.spec.ConfigError: unknown rule 'nope'; allowed: stdp, weight_dependent, ...
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

from stdp_bench.levels.spec import AXES, ConfigError, Level, Param

ENTRY_POINT_GROUP = "stdp_bench.levels"

BUILTIN: tuple[str, ...] = (
    "stdp_bench.levels.encoders.poisson",
    "stdp_bench.levels.encoders.bernoulli",
    "stdp_bench.levels.encoders.rank_order",
    "stdp_bench.levels.encoders.direct",
    "stdp_bench.levels.encoders.events",
    "stdp_bench.levels.encoders.latency",
    "stdp_bench.levels.neurons.if_",
    "stdp_bench.levels.neurons.lif",
    "stdp_bench.levels.neurons.adaptive",
    "stdp_bench.levels.neurons.izhikevich",
    "stdp_bench.levels.rules.stdp",
    "stdp_bench.levels.rules.weight_dependent",
    "stdp_bench.levels.rules.hebbian",
    "stdp_bench.levels.rules.teacher",
    "stdp_bench.levels.rules.none",
    "stdp_bench.levels.rules.triplet",
    "stdp_bench.levels.rules.teacher_force",
    "stdp_bench.levels.rules.teacher_sym",
    "stdp_bench.levels.rules.multiplicative",
    "stdp_bench.levels.rules.rstdp",
    "stdp_bench.levels.architectures",
    "stdp_bench.levels.readouts",
    "stdp_bench.levels.datasets.digits",
    "stdp_bench.levels.datasets.mnist_family",
    "stdp_bench.levels.datasets.cifar10",
    "stdp_bench.levels.datasets.nmnist",
)

# axis -> name -> Level, in registration order; filled once per process by _levels().
_REGISTRY: dict[str, dict[str, Level]] | None = None


def _levels_of(module: ModuleType) -> tuple[Level, ...]:
    found = getattr(module, "LEVELS", None)
    if found is None and hasattr(module, "LEVEL"):
        found = (module.LEVEL,)
    if not found or not all(isinstance(x, Level) for x in found):
        raise ConfigError(f"level module {module.__name__!r} defines neither LEVEL nor "
                          "LEVELS (stdp_bench.levels.spec.Level)")
    return tuple(found)


def _add(registry: dict[str, dict[str, Level]], module: ModuleType) -> None:
    for level in _levels_of(module):
        have = registry[level.axis].get(level.name)
        if have is not None and have.module != level.module:
            raise ConfigError(f"{level.axis} {level.name!r} is defined twice: in "
                              f"{have.module} and in {level.module}")
        for p in level.params:
            owner = _param_owner(registry, p.name)
            if owner is not None and owner is not level and owner.module != level.module:
                raise ConfigError(f"{level.axis} {level.name!r} declares setting "
                                  f"{p.name!r}, already declared by {owner.axis} {owner.name!r}")
        registry[level.axis][level.name] = level


def _param_owner(registry: dict[str, dict[str, Level]], name: str) -> Level | None:
    for axis in registry.values():
        for level in axis.values():
            if any(p.name == name for p in level.params):
                return level
    return None


def _import(name: str, why: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"{why}: cannot import level module {name!r}: {exc}") from None


def _levels() -> dict[str, dict[str, Level]]:
    global _REGISTRY
    if _REGISTRY is None:
        registry: dict[str, dict[str, Level]] = {axis: {} for axis in AXES}
        for name in BUILTIN:
            _add(registry, importlib.import_module(name))
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            _add(registry, _import(ep.value, f"entry point {ep.name!r} "
                                             f"({ENTRY_POINT_GROUP})"))
        _REGISTRY = registry
    return _REGISTRY


def load_plugins(modules: list[str] | tuple[str, ...], where: str = "plugins") -> None:
    """Import level modules (a grid's ``plugins``) and register their levels; loading
    a module again changes nothing.

    Only this process learns them: a worker process or Ray task that runs a grid's jobs
    calls this itself with the names its job carries.
    """
    registry = _levels()
    for name in modules:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: {name!r} must be a module name")
        _add(registry, _import(name, where))


def names(axis: str) -> tuple[str, ...]:
    """The levels of ``axis`` in registration order."""
    return tuple(_levels()[axis])


def levels(axis: str) -> tuple[Level, ...]:
    """The :class:`Level` objects of ``axis``."""
    return tuple(_levels()[axis].values())


def get(axis: str, name: str) -> Level:
    """The level ``name`` of ``axis``; the error lists the allowed levels."""
    found = _levels()[axis].get(name)
    if found is None:
        raise ConfigError(f"unknown {axis} {name!r}; allowed: {', '.join(names(axis))}")
    return found


def module(level: Level) -> ModuleType:
    """The module holding ``level``'s steps."""
    return importlib.import_module(level.module)


def load_ref(ref: str, what: str) -> object:
    """The object a level names as ``"module:name"`` (a trainer, a predictor), imported
    when first needed; the error names ``what`` declared it.

    >>> load_ref("stdp_bench.levels.spec:Level", "test").__name__
    'Level'
    """
    module_name, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot load {ref!r}: {exc}") from None


def level_params() -> dict[str, tuple[Param, Level]]:
    """Settings declared by levels: name -> (declaration, level)."""
    return {p.name: (p, lv) for axis in _levels().values() for lv in axis.values()
            for p in lv.params}


# The kernel steps a neuron level needs for each kernel template: feature maps'
# winners-take-all decides which neurons over threshold fire, so it needs the step split
# at the threshold test.
NEURON_STEPS = {"dense": ("kernel_reset", "kernel_step"),
                "maps": ("kernel_reset", "kernel_integrate_all", "kernel_fire"),
                # Stacks step their own one-spike units (engine/stack_kernel.py).
                "stack": ()}


def has_steps(neuron: str, template: str) -> bool:
    """Whether neuron level ``neuron`` has the kernel steps ``template`` composes.

    >>> has_steps("adaptive", "maps"), has_steps("izhikevich", "maps")
    (True, False)
    """
    level = get("neuron", neuron)
    return level.kernel and all(hasattr(module(level), f) for f in NEURON_STEPS[template])
