"""Combinations of settings that no engine can run, rejected before a job starts.

Each setting is validated on its own by :func:`stdp_bench.config.check_value`; this module
checks a whole cell (:func:`check_cell`): an architecture its family cannot build, a
dataset its encoder cannot read, a rule its architecture cannot run, a presentation that
is no whole number of steps, settings out of the order a level needs, and so on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stdp_bench.config import REGISTRY_AXES, CellConfig, ConfigError
from stdp_bench.levels import registry
from stdp_bench.levels.spec import Level

if TYPE_CHECKING:  # trainers import this module at run time
    from stdp_bench.trainers import Trainer

__all__ = ["IF_PARAMS", "MAX_STEPS", "check_cell", "integrate_and_fire_params"]

# Steps of one presentation the engines can index: spike steps are int32.
MAX_STEPS = 2 ** 31 - 1


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
    _check_steps(cfg, where)
    _check_orderings(cfg, where)
    from stdp_bench.trainers import trainer_of  # trainers use this module's checks

    trainer = trainer_of(cfg)
    for key, what, feature in (("curve_every", "a learning curve", "curve"),
                               ("settle", "thresholds settling before the freeze", "settles")):
        if getattr(cfg, key) and not getattr(trainer, feature):
            raise ConfigError(f"{where}: {key} = {getattr(cfg, key)} ({what}) is not "
                              f"available for architecture = {cfg.architecture!r}; "
                              f"allowed for: {', '.join(_architectures_with(feature))}")
    _check_calibration(cfg, trainer, where)
    if cfg.settle > cfg.n_train:
        raise ConfigError(f"{where}: settle = {cfg.settle} is more than n_train = "
                          f"{cfg.n_train}; the settling samples are the first of the "
                          "training order, so settle must be at most n_train")
    encoder = registry.get("encoder", cfg.encoder)
    _check_data(cfg, encoder, where)
    if cfg.family == "stdp" and encoder.gradient_only:
        allowed = [e.name for e in registry.levels("encoder") if not e.gradient_only]
        raise ConfigError(
            f"{where}: encoder = {cfg.encoder!r} is for gradient-trained baselines only; "
            f"allowed for stdp: {', '.join(allowed)}")
    trainer.check(cfg, where)


def _architectures_with(feature: str) -> list[str]:
    """Architectures whose trainer has ``feature`` (a ``Trainer`` flag, e.g. ``settles``)."""
    return [a.name for a in registry.levels("architecture")
            if getattr(registry.load_ref(a.trainer, a.name), feature)]


def _check_calibration(cfg: CellConfig, trainer: type[Trainer], where: str) -> None:
    """Calibrated thresholds need adaptive ones (a neuron level that uses
    ``theta_plus``) in an engine that holds them beside the weights
    (``Trainer.calibrates``)."""
    if cfg.threshold_calibration == "none":
        return
    head = f"{where}: threshold_calibration = {cfg.threshold_calibration!r}"
    if not trainer.calibrates:
        raise ConfigError(f"{head} is not available for architecture = "
                          f"{cfg.architecture!r}; allowed for: "
                          f"{', '.join(_architectures_with('calibrates'))}")
    if "theta_plus" not in registry.get("neuron", cfg.neuron).uses:
        allowed = [n.name for n in registry.levels("neuron") if "theta_plus" in n.uses]
        raise ConfigError(f"{head} sets adaptive thresholds, which neuron = "
                          f"{cfg.neuron!r} has not; allowed neurons: {', '.join(allowed)}; "
                          "or threshold_calibration = 'none'")


def _check_steps(cfg: CellConfig, where: str) -> None:
    """A presentation is a whole number of steps, at least one and no more than the
    engines can count."""
    if cfg.dt > cfg.time:
        raise ConfigError(f"{where}: dt = {cfg.dt!r} is above time = {cfg.time!r}; a "
                          "presentation needs at least one step, so dt must be at most time")
    steps = cfg.time / cfg.dt
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
        raise ConfigError(f"{where}: time = {cfg.time!r} is not a multiple of dt = "
                          f"{cfg.dt!r}; a presentation must be a whole number of steps")
    # The engines record a spike's step in int32 (the kernel's event buffers).
    if round(steps) > MAX_STEPS:
        raise ConfigError(f"{where}: time = {cfg.time!r} / dt = {cfg.dt!r} is "
                          f"{round(steps)} steps; the engines count at most {MAX_STEPS} "
                          "(int32 step indices)")


def _check_orderings(cfg: CellConfig, where: str) -> None:
    """Settings a level of the cell needs strictly ordered (``Level.orderings``)."""
    for axis in REGISTRY_AXES:
        level = registry.get(axis, getattr(cfg, axis))
        for lower, upper, why in level.orderings:
            a, b = getattr(cfg, lower), getattr(cfg, upper)
            if not a < b:
                raise ConfigError(f"{where}: {lower} = {a!r} is not below {upper} = {b!r}; "
                                  f"{axis} = {level.name!r} needs {lower} below {upper} "
                                  f"({why})")


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
