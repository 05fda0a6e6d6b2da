"""Trainers: what an architecture level names to say how its cells run.

A trainer is a class (``Level.trainer = "module:Class"``, resolved by
:func:`trainer_of`); the protocol (:mod:`stdp_bench.protocol`) asks it for an engine and
for what that engine's cells can do. A plugin architecture declares its own subclass.
Importing this module imports neither torch nor numba: validation asks trainers
whether a cell can run (:meth:`Trainer.check`) before any engine exists.

>>> from stdp_bench.config import CellConfig
>>> t = trainer_of(CellConfig(architecture="conv"))
>>> t.__name__, t.curve, t.provides
('FeatureTrainer', False, ('counts', 'events', 'maps'))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, Sequence

from stdp_bench.cell_checks import integrate_and_fire_params
from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.execution import Execution
from stdp_bench.levels import registry

if TYPE_CHECKING:
    from stdp_bench.engine.interface import Engine
    from stdp_bench.levels.stack_spec import Layer


class DataShape(Protocol):
    """What building an engine needs of its data (a :class:`~stdp_bench.data.Dataset`,
    or a model file's header)."""

    n_input: int
    n_classes: int
    input_shape: tuple[int, int, int]


class Trainer:
    """How the cells of an architecture run; subclasses fill in :meth:`build`."""

    #: Learning curves (``curve_every``): label and test between training segments.
    curve: ClassVar[bool] = False
    #: Neurons are labelled on training samples before the test pass.
    labels: ClassVar[bool] = True
    #: Kinds of response the engine's ``respond`` fills (readout levels ``reads``).
    provides: ClassVar[tuple[str, ...]] = ("counts", "events")
    #: Training continues from a later position (``train(..., start=a)`` after
    #: ``load_state``): what tuning rung by rung and checkpoints need.
    resumable: ClassVar[bool] = True
    #: The engines can let adaptive thresholds settle with the weights frozen
    #: (``settle``; the replica engines' ``settle``).
    settles: ClassVar[bool] = False
    #: The engines' state holds ``W [R, n_input, n]`` and ``theta [R, n]``, which
    #: ``threshold_calibration`` sets from each other (stdp_bench/threshold_calibration.py).
    calibrates: ClassVar[bool] = False
    #: The readouts that score its cells, of those whose kinds it provides (None: all).
    readouts: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def check(cls, cfg: CellConfig, where: str) -> None:
        """Refuse a cell this trainer's engines cannot run (the message names why)."""

    @classmethod
    def group_key(cls, cfg: CellConfig, engine: str) -> tuple | None:
        """Cells whose keys are equal (and whose shape settings, ``grid.SHAPE_KEYS``,
        agree) share one engine as replicas when ``engine`` (``Execution.engine``) is
        asked for; None: this cell has an engine of its own."""
        return None

    @classmethod
    def engine_name(cls, cfgs: Sequence[CellConfig], execution: Execution) -> str:
        """The name of the engine :meth:`build` will return (records state it)."""
        raise NotImplementedError

    @classmethod
    def build(cls, cfgs: Sequence[CellConfig], ds: DataShape, gains: Sequence[float],
              execution: Execution) -> "Engine":
        """An engine holding ``cfgs`` as replicas (one cell when :attr:`groups` is off)."""
        raise NotImplementedError


def _missing_steps(cfgs: Sequence[CellConfig], engine: str) -> list[str]:
    """Levels of ``cfgs`` without steps for ``engine`` (kernel or torch): both engines
    encode with the encoders' kernel steps; the kernel engine also needs the neuron's
    and rule's kernel steps, the torch engine their torch twins."""
    needs = {"encoder": "kernel", "neuron": engine, "rule": engine}
    gaps = [f"{axis} {getattr(c, axis)!r}" for c in cfgs for axis, attr in needs.items()
            if not getattr(registry.get(axis, getattr(c, axis)), attr)]
    return list(dict.fromkeys(gaps))


class ReplicaTrainer(Trainer):
    """Diehl & Cook networks: the fused kernel on the CPU, the torch replica network on
    CUDA (or when the levels have only torch twins)."""

    curve = True
    settles = True
    calibrates = True

    @classmethod
    def group_key(cls, cfg: CellConfig, engine: str) -> tuple | None:
        """Replicas; cells whose levels all have kernel steps apart from the others
        (torch-only plugin levels), which run on the torch engine."""
        return (all(registry.get(axis, getattr(cfg, axis)).kernel
                    for axis in ("encoder", "neuron", "rule")),)

    @classmethod
    def engine_name(cls, cfgs: Sequence[CellConfig], execution: Execution) -> str:
        """The chosen engine, unless the levels lack its steps and the user did not pin
        it (then the other one).

        >>> cfgs = [CellConfig(rule="stdp")]
        >>> (ReplicaTrainer.engine_name(cfgs, Execution()),
        ...  ReplicaTrainer.engine_name(cfgs, Execution(engine="torch")))
        ('kernel', 'torch')
        """
        chosen = execution.engine
        other = "torch" if chosen == "kernel" else "kernel"
        if not _missing_steps(cfgs, chosen):
            return chosen
        if execution.pinned or _missing_steps(cfgs, other):
            hint = (f"run it with --engine {other}" if not _missing_steps(cfgs, other)
                    else "no engine runs it")
            raise ConfigError(f"{', '.join(_missing_steps(cfgs, chosen))}: no steps for the "
                              f"{chosen} engine; {hint}")
        return other

    @classmethod
    def build(cls, cfgs: Sequence[CellConfig], ds: DataShape, gains: Sequence[float],
              execution: Execution) -> "Engine":
        """A :class:`~stdp_bench.engine.kernel_engine.ReplicaSet` or a
        :class:`~stdp_bench.engine.torch_engine.TorchReplicaSet`."""
        build = _REPLICA_ENGINES[cls.engine_name(cfgs, execution)]
        return build(list(cfgs), ds, list(gains), execution.device)


def _kernel_set(cfgs: list[CellConfig], ds: DataShape, gains: list[float],
                device: str) -> "Engine":
    from stdp_bench.engine.kernel_engine import ReplicaSet

    return ReplicaSet(cfgs, ds.n_input, gains, ds.n_classes)  # the CPU whatever device


def _torch_set(cfgs: list[CellConfig], ds: DataShape, gains: list[float],
               device: str) -> "Engine":
    from stdp_bench.engine.torch_engine import TorchReplicaSet

    return TorchReplicaSet(cfgs, ds.n_input, gains, ds.n_classes, device=device)


# The replica engines by the names records give them (Execution.engine's choices).
_REPLICA_ENGINES = {"kernel": _kernel_set, "torch": _torch_set}


class FeatureTrainer(Trainer):
    """Convolutional / locally connected STDP layers: the fused map kernel
    (:mod:`stdp_bench.engine.map_engine`, replicas) where it runs the cell, else one
    stock BindsNET network per cell (``--engine torch``, the CUDA path)."""

    provides = ("counts", "events", "maps")

    @classmethod
    def check(cls, cfg: CellConfig, where: str) -> None:
        """Integrate-and-fire maps, no class gate, no retries; an encoder with an input
        gain and rules without a BindsNET class only where the map kernel runs them."""
        arch, rule = cfg.architecture, registry.get("rule", cfg.rule)
        encoder = registry.get("encoder", cfg.encoder)
        if rule.supervised:
            raise ConfigError(f"{where}: rule = {cfg.rule!r} is not available for "
                              f"architecture = {arch!r} (its class gate needs the dc2015 "
                              "layout)")
        try:
            integrate_and_fire_params(cfg)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if cfg.min_spikes > 0:
            raise ConfigError(f"{where}: min_spikes = {cfg.min_spikes} (retries) is not "
                              f"available for architecture = {arch!r}; use 0")
        gaps = map_kernel_gaps(cfg)
        if gaps and hasattr(registry.module(encoder), "input_gain"):
            raise ConfigError(f"{where}: encoder = {cfg.encoder!r} is not available here "
                              f"(its input gain needs the map kernel, which cannot run "
                              f"this cell: {gaps[0]})")
        if gaps and not hasattr(registry.module(rule), "stock_rule"):
            raise ConfigError(f"{where}: rule = {cfg.rule!r} cannot run on "
                              f"architecture = {arch!r}: the map kernel cannot "
                              f"({gaps[0]}) and it has no BindsNET rule (stock_rule)")

    @classmethod
    def group_key(cls, cfg: CellConfig, engine: str) -> tuple | None:
        """On the map kernel, layers of one geometry train together."""
        if engine != "kernel" or map_kernel_gaps(cfg):
            return None
        return (cfg.kernel_size, cfg.stride, cfg.n_filters, cfg.winners, cfg.conv_learning,
                cfg.conv_kwta, cfg.conv_radius)

    @classmethod
    def engine_name(cls, cfgs: Sequence[CellConfig], execution: Execution) -> str:
        """``kernel`` (the map kernel) unless ``--engine torch`` was asked for or a cell
        needs what only BindsNET's classes have (then ``bindsnet``, or an error when the
        kernel was pinned).

        >>> cfg = CellConfig(architecture="conv", conv_learning="first_spike")
        >>> (FeatureTrainer.engine_name([cfg], Execution()),
        ...  FeatureTrainer.engine_name([cfg], Execution(engine="torch")),
        ...  FeatureTrainer.engine_name([cfg.with_settings(conv_learning="every_spike")],
        ...                             Execution()))
        ('kernel', 'bindsnet', 'bindsnet')
        """
        gaps = [g for c in cfgs for g in map_kernel_gaps(c)]
        if execution.engine == "kernel" and not gaps:
            return "kernel"
        if execution.engine == "kernel" and execution.pinned:
            raise ConfigError(f"{gaps[0]}; run it with --engine torch (BindsNET's layers)")
        gained = [c.encoder for c in cfgs
                  if hasattr(registry.module(registry.get("encoder", c.encoder)), "input_gain")]
        if gained:
            raise ConfigError(f"encoder = {gained[0]!r} needs the map kernel (BindsNET's "
                              "layers take no input gain); run it with --engine kernel")
        return "bindsnet"

    @classmethod
    def build(cls, cfgs: Sequence[CellConfig], ds: DataShape, gains: Sequence[float],
              execution: Execution) -> "Engine":
        """A :class:`~stdp_bench.engine.map_engine.MapReplicaSet`, or a
        :class:`~stdp_bench.engine.feature_engine.FeatureCell` (one cell, unit gain)."""
        if cls.engine_name(cfgs, execution) == "kernel":
            from stdp_bench.engine.map_engine import MapReplicaSet

            return MapReplicaSet(list(cfgs), ds.input_shape, list(gains), ds.n_classes)
        from stdp_bench.engine.feature_engine import FeatureCell

        (cfg,) = cfgs
        return FeatureCell(cfg, ds.input_shape, 1.0, ds.n_classes, device=execution.device)


def map_kernel_gaps(cfg: CellConfig) -> list[str]:
    """Why the map kernel cannot run ``cfg`` (empty when it can).

    >>> map_kernel_gaps(CellConfig(architecture="conv", conv_learning="every_spike"))
    ["conv_learning = 'every_spike' on shared conv kernels (BindsNET's batch update)"]
    """
    gaps = []
    for axis in ("encoder", "rule"):
        if not registry.get(axis, getattr(cfg, axis)).kernel:
            gaps.append(f"{axis} {getattr(cfg, axis)!r} has no kernel steps")
    if not registry.has_steps(cfg.neuron, "maps"):
        gaps.append(f"neuron {cfg.neuron!r} has no kernel_integrate_all / kernel_fire steps")
    if registry.get("rule", cfg.rule).traces:
        gaps.append(f"rule {cfg.rule!r} keeps per-neuron traces the map kernel does not")
    if cfg.architecture == "conv" and cfg.conv_learning != "first_spike":
        gaps.append(f"conv_learning = {cfg.conv_learning!r} on shared conv kernels "
                    "(BindsNET's batch update)")
    return gaps


class StackTrainer(Trainer):
    """Layer stacks: the event-driven stack kernel
    (:mod:`stdp_bench.engine.stack_engine`), seeds of one geometry as replicas."""

    curve = True
    provides = ("counts", "events", "maps", "decisions")
    # Stacks end in thousands of binary features (12,150 for Kheradpisheh's): a linear
    # SVM on them, as Kheradpisheh et al. read them, labelling by response and n-grams
    # (skipped where too large); a standardised logistic probe on 60,000 x 12,150 dense
    # floats would need over 10 GB. A stack with a decision layer (Mozafari's) is also
    # read by its own decision, no classifier fit.
    readouts = ("svm", "proportion_weighting", "ngram", "decision")

    @classmethod
    def check(cls, cfg: CellConfig, where: str) -> None:
        """Layers declared, integrate-and-fire units, a rule with kernel steps, epochs
        equal to the layers' schedule."""
        from stdp_bench.levels.stack_spec import stack_layers, total_epochs

        if not cfg.layers:
            raise ConfigError(f"{where}: architecture = 'stack' needs 'layers' (a list of "
                              "tables, levels/stack_spec.py)")
        if cfg.neuron != "if":
            raise ConfigError(f"{where}: neuron = {cfg.neuron!r} is not available for "
                              "architecture = 'stack' (its units are SpykeTorch's "
                              "one-spike integrate-and-fire maps); allowed: if")
        for axis in ("encoder", "rule"):
            if not registry.get(axis, getattr(cfg, axis)).kernel:
                raise ConfigError(f"{where}: {axis} = {getattr(cfg, axis)!r} has no kernel "
                                  "steps, which the stack kernel needs")
        rule = registry.get("rule", cfg.rule)
        if rule.supervised or rule.traces:
            raise ConfigError(f"{where}: rule = {cfg.rule!r} is not available for "
                              "architecture = 'stack' (its units learn once per image from "
                              "spike order: no class gate, no per-neuron traces)")
        layers = stack_layers(cfg.layers)
        for n, lay in enumerate(layers):
            if lay.kind == "conv":
                cls._check_layer(cfg, n, lay, where)
        want = total_epochs(layers)
        if cfg.epochs != want:
            raise ConfigError(f"{where}: epochs = {cfg.epochs}: a stack trains its conv "
                              f"layers one after the other for their own epochs, {want} in "
                              f"all; set epochs = {want}")

    @classmethod
    def _check_layer(cls, cfg: CellConfig, n: int, lay: "Layer", where: str) -> None:
        """A layer's own rule (registered, kernel steps, no class gate or traces; a
        decision rule only on the decision layer) and its decision maps (a whole number
        per class)."""
        here = f"{where}: layers[{n}] (conv)"
        if lay.rule:
            names = registry.names("rule")
            if lay.rule not in names:
                raise ConfigError(f"{here}: 'rule' = {lay.rule!r} is not allowed; allowed: "
                                  f"{', '.join(names)}")
            level = registry.get("rule", lay.rule)
            if not level.kernel or level.supervised or level.traces:
                raise ConfigError(f"{here}: 'rule' = {lay.rule!r} is not available in a "
                                  "stack (it needs kernel steps, no class gate and no "
                                  "per-neuron traces)")
            if level.decision_rule and not lay.decide:
                raise ConfigError(f"{here}: 'rule' = {lay.rule!r} learns from the layer's "
                                  "decisions; set decide = true on it")
        if lay.decide:
            classes = registry.get("dataset", cfg.dataset).n_classes
            if classes and lay.maps % classes:
                raise ConfigError(f"{here}: 'maps' = {lay.maps} must be a multiple of the "
                                  f"{classes} classes of dataset {cfg.dataset!r} (decide: "
                                  "maps / classes maps per class)")

    @classmethod
    def group_key(cls, cfg: CellConfig, engine: str) -> tuple | None:
        """Stacks of one geometry train together."""
        return (cfg.layers, cfg.time, cfg.dt, cfg.n_train)

    @classmethod
    def engine_name(cls, cfgs: Sequence[CellConfig], execution: Execution) -> str:
        """The stack kernel (on the CPU, whatever the device)."""
        return "kernel"

    @classmethod
    def build(cls, cfgs: Sequence[CellConfig], ds: DataShape, gains: Sequence[float],
              execution: Execution) -> "Engine":
        """A :class:`~stdp_bench.engine.stack_engine.StackReplicaSet`."""
        from stdp_bench.engine.stack_engine import StackReplicaSet

        return StackReplicaSet(list(cfgs), ds.input_shape, list(gains), ds.n_classes)


class BaselineTrainer(Trainer):
    """Gradient-trained baselines, scored by their own output layer."""

    labels = False
    provides = ("outputs",)
    resumable = False  # Adam's moments and the epoch loop live in one call
    convolutional: ClassVar[bool] = False

    @classmethod
    def engine_name(cls, cfgs: Sequence[CellConfig], execution: Execution) -> str:
        """Torch autograd."""
        return "autograd"

    @classmethod
    def build(cls, cfgs: Sequence[CellConfig], ds: DataShape, gains: Sequence[float],
              execution: Execution) -> "Engine":
        """A :class:`~stdp_bench.engine.baseline_engine.BaselineEngine`."""
        from stdp_bench.engine.baseline_engine import BaselineEngine

        (cfg,) = cfgs
        return BaselineEngine(cfg, ds.input_shape, ds.n_classes,
                              convolutional=cls.convolutional, device=execution.device)


class MlpBaseline(BaselineTrainer):
    """One hidden layer of ``n_neurons``."""


class CnnBaseline(BaselineTrainer):
    """Two 5x5 convolutions with pooling, then a linear layer."""

    convolutional = True


def trainer_of(cfg: CellConfig) -> type[Trainer]:
    """The trainer class cell ``cfg``'s architecture level names."""
    level = registry.get("architecture", cfg.architecture)
    found = registry.load_ref(level.trainer, f"architecture {level.name!r} trainer")
    if not (isinstance(found, type) and issubclass(found, Trainer)):
        raise ConfigError(f"architecture {level.name!r}: trainer {level.trainer!r} is not "
                          "a stdp_bench.trainers.Trainer subclass")
    return found
