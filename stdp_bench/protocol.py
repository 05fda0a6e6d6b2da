"""The protocol every engine runs: train (with curve points) -> label -> evaluate ->
readouts -> status. ``run`` (:mod:`stdp_bench.train`), ``tune``'s rungs
(:mod:`stdp_bench.trial_jobs`) and ``bench`` all go through here.

1. Train with plasticity on, one sample at a time, on each replica's training order
   (the training subset, reshuffled every later epoch).
2. Freeze (after letting adaptive thresholds settle with the weights frozen, and then
   setting them from the weights, when the cell asks: ``settle``,
   ``threshold_calibration``). Run the labelling samples (drawn from the training split)
   and fit every readout of the cell's family whose response kinds the trainer
   provides.
3. Run the evaluation samples (test split, or validation samples carved from the
   training split while tuning) and score the readouts there.

>>> from stdp_bench.config import CellConfig
>>> from stdp_bench.data import load_dataset
>>> ds = load_dataset("digits")
>>> cfg = CellConfig(dataset="digits", n_neurons=10, time=50, n_train=40, n_label=50,
...                  n_test=50)
>>> outcome, = run_cells([cfg], ds)
>>> outcome.status, sorted(outcome.readouts)
(<Status.OK: 'ok'>, ['all_activity', 'linear', 'ngram', 'proportion_weighting'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from stdp_bench.checkpoints import Checkpoints
from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.data import Dataset, Subsets, cell_subsets
from stdp_bench.engine.interface import Engine, Metrics
from stdp_bench.engine.responses import Responses, TrainStats
from stdp_bench.execution import Execution
from stdp_bench.readout import (Params, apply_readouts, confusion, fit_readouts,
                                readout_levels)
from stdp_bench.records import CurvePoint, ModelParts, ReadoutScore, Status
from stdp_bench.replica_params import auto_gain
from stdp_bench.tensorboard_log import TensorBoardLog
from stdp_bench.threshold_calibration import calibrated_state
from stdp_bench.trainers import Trainer, trainer_of

Progress = Callable[[int], None]


def input_gains(cfgs: Sequence[CellConfig], ds: Dataset) -> list[float]:
    """Each replica's input current gain: its ``input_gain``, or its encoder's auto gain."""
    return [c.input_gain if c.input_gain > 0
            else auto_gain(c.encoder, ds.x_train, c.intensity_hz, c.time, c.dt)
            for c in cfgs]


def train_orders(cfgs: Sequence[CellConfig], subsets: Sequence[Subsets]) -> np.ndarray:
    """Presentation order per replica: the training subset, reshuffled each later epoch."""
    rows = []
    for cfg, sub in zip(cfgs, subsets):
        parts = [sub.train]
        for epoch in range(1, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch, 31])
            parts.append(rng.permutation(sub.train))
        rows.append(np.concatenate(parts))
    return np.stack(rows)


def curve_segments(K: int, every: int) -> list[tuple[int, int]]:
    """Training positions ``[lo, hi)`` between learning-curve points (one segment when
    ``every`` is 0).

    >>> curve_segments(10, 4), curve_segments(10, 0), curve_segments(8, 4)
    ([(0, 4), (4, 8), (8, 10)], [(0, 10)], [(0, 4), (4, 8)])
    """
    stops = [*range(every, K, every), K] if every else [K]
    return list(zip([0, *stops[:-1]], stops))


def scaled_progress(cb: Progress | None, factor: int) -> Progress | None:
    """``cb`` counting ``factor`` network-samples per sample (one per replica)."""
    if cb is None:
        return None
    return lambda k: cb(k * factor)


def cell_samples(cfgs: Sequence[CellConfig]) -> int:
    """Network-samples the protocol simulates for ``cfgs`` (one job; for progress bars):
    replicas x (training presentations + labelling and evaluation at every curve point).
    """
    c = cfgs[0]
    trainer = trainer_of(c)
    K = c.n_train * c.epochs
    points = len(curve_segments(K, c.curve_every if trainer.curve else 0))
    return len(cfgs) * (K + points * ((c.n_label if trainer.labels else 0) + c.n_test))


@dataclass(frozen=True)
class Plan:
    """The samples of one group of replicas: what each trains, labels and is scored on."""

    ds: Dataset
    cfgs: tuple[CellConfig, ...]
    trainer: type[Trainer]
    orders: np.ndarray  # (R, K) training positions -> sample
    label_orders: np.ndarray  # (R, n_label)
    eval_x: np.ndarray
    eval_y: np.ndarray
    eval_orders: np.ndarray  # (R, n_eval)
    gains: tuple[float, ...]  # each replica's input gain

    @classmethod
    def of(cls, cfgs: Sequence[CellConfig], ds: Dataset) -> "Plan":
        """The plan of ``cfgs`` (equal shapes) on ``ds``."""
        subsets = [cell_subsets(ds, c) for c in cfgs]
        eval_x, eval_y = subsets[0].eval_split(ds)
        return cls(ds, tuple(cfgs), trainer_of(cfgs[0]), train_orders(cfgs, subsets),
                   np.stack([s.label for s in subsets]), eval_x, eval_y,
                   np.stack([s.evaluate for s in subsets]), tuple(input_gains(cfgs, ds)))

    def build(self, execution: Execution) -> Engine:
        """A fresh engine holding the plan's replicas."""
        return self.trainer.build(self.cfgs, self.ds, self.gains, execution)

    def train(self, engine: Engine, lo: int, hi: int, on_progress: Progress | None = None
              ) -> TrainStats:
        """Training positions ``lo:hi`` of every replica."""
        return engine.train(self.ds.x_train, self.ds.y_train,
                            np.ascontiguousarray(self.orders[:, lo:hi]), start=lo,
                            on_progress=scaled_progress(on_progress, len(self.cfgs)))

    @property
    def settles(self) -> bool:
        """Whether any replica lets its thresholds settle before the freeze."""
        return any(c.settle for c in self.cfgs)

    def settle(self, engine: Engine) -> None:
        """Let each replica's adaptive thresholds settle on the first ``settle`` samples
        of its training order, weights frozen."""
        counts = np.array([c.settle for c in self.cfgs])
        if not counts.any():
            return
        if not hasattr(engine, "settle"):
            # check_cell refuses settle where the trainer's engines cannot settle.
            raise ConfigError(f"settle = {counts.max()}: the {engine.name} engine cannot "
                              "settle thresholds with the weights frozen; use settle = 0")
        engine.settle(self.ds.x_train, np.ascontiguousarray(self.orders[:, :counts.max()]),
                      counts)

    @property
    def calibrates(self) -> bool:
        """Whether any replica sets its thresholds from its weights at the freeze."""
        return any(c.threshold_calibration != "none" for c in self.cfgs)

    def calibrate(self, engine: Engine) -> None:
        """Set the thresholds of the replicas that ask (``threshold_calibration``) from
        their weights (:mod:`stdp_bench.threshold_calibration`); the others keep theirs."""
        if not self.calibrates:
            return
        # check_cell admits calibration only where the engines hold W [R, n_in, n] and
        # theta [R, n] (Trainer.calibrates).
        engine.load_state(calibrated_state(engine.state(), self.cfgs))

    def freeze(self, engine: Engine) -> None:
        """What happens to the thresholds between training and labelling: settling,
        then calibration (each only where a replica asks)."""
        self.settle(engine)
        self.calibrate(engine)

    def respond(self, engine: Engine, on_progress: Progress | None = None
                ) -> tuple[Responses | None, Responses]:
        """Frozen responses on the labelling samples (None when the trainer labels
        nothing) and on the evaluation samples."""
        step = scaled_progress(on_progress, len(self.cfgs))
        labelled = (engine.respond(self.ds.x_train, self.label_orders, phase=1,
                                   on_progress=step) if self.trainer.labels else None)
        return labelled, engine.respond(self.eval_x, self.eval_orders, phase=2,
                                        on_progress=step)

    def fit_readouts(self, r: int, labelled: Responses | None,
                     readouts: Sequence[str] | None = None) -> dict[str, Params]:
        """What replica r's readouts learn on its labelling responses: every readout of
        its family that the engine's responses allow (or ``readouts`` only)."""
        cfg = self.cfgs[r]
        levels = [lv for lv in readout_levels(cfg.family, self.trainer.provides)
                  if (readouts is None or lv.name in readouts)
                  and (self.trainer.readouts is None or lv.name in self.trainer.readouts)]
        fit = None if labelled is None else labelled.replica(r)
        fit_y = None if labelled is None else self.ds.y_train[self.label_orders[r]]
        return fit_readouts(levels, fit, fit_y, self.ds.n_classes, cfg)

    def predictions(self, r: int, labelled: Responses | None, tested: Responses,
                    readouts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Replica r's test predictions by its readouts (:meth:`fit_readouts`)."""
        return apply_readouts(self.fit_readouts(r, labelled, readouts), tested.replica(r),
                              self.ds.n_classes, self.cfgs[r])

    def test_labels(self, r: int) -> np.ndarray:
        """Classes of replica r's evaluation samples."""
        return self.eval_y[self.eval_orders[r]]


def status_of(stats: TrainStats, tested: Responses | None, r: int) -> tuple[Status, str | None]:
    """Diverged when training stopped being finite, silent when no neuron spiked on the
    evaluation samples, else ok; with the reason."""
    if stats.diverged_at[r] > 0:
        return Status.DIVERGED, (f"non-finite weights or thresholds at training sample "
                                 f"{int(stats.diverged_at[r])}")
    if tested is not None and tested.counts[r].sum() == 0:
        return Status.SILENT, "no excitatory spike on the test set"
    return Status.OK, None


def merge_stats(stats: TrainStats, part: TrainStats, lo: int) -> None:
    """Copy a segment's statistics (positions ``lo..``) into ``stats``; a replica keeps
    the first position at which it diverged."""
    hi = lo + part.exc_spikes.shape[1]
    stats.exc_spikes[:, lo:hi] = part.exc_spikes
    stats.in_spikes[:, lo:hi] = part.in_spikes
    stats.retries[:, lo:hi] = part.retries
    first = stats.diverged_at == 0
    stats.diverged_at[first] = part.diverged_at[first]


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``pred`` equal to ``y`` (abstentions, -1, count as wrong)."""
    return float((pred == y).mean())


@dataclass
class Outcome:
    """What the protocol measured for one replica (a cell)."""

    status: Status
    error: str | None
    metrics: Metrics
    readouts: dict[str, ReadoutScore] = field(default_factory=dict)
    curve: list[CurvePoint] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    model: ModelParts | None = None  # None for a diverged cell


@dataclass
class Timings:
    """Wall-clock seconds of a job's phases (all replicas together)."""

    train: float = 0.0
    curve: float = 0.0
    eval: float = 0.0
    resumed_at: int = 0  # training position of the checkpoint this job resumed from


_STATS = ("exc_spikes", "in_spikes", "retries", "diverged_at")


def _save(store: Checkpoints, engine: Engine, position: int, stats: TrainStats,
          curves: list[list[CurvePoint]], t: Timings) -> None:
    header = {"keys": list(store.keys), "position": position,
              "positions": int(stats.exc_spikes.shape[1]),
              "curves": [[{"train_samples": p.train_samples, "accuracy": p.accuracy}
                          for p in c] for c in curves],
              "train_seconds": t.train, "curve_seconds": t.curve}
    arrays = {f"state/{k}": v for k, v in engine.state().items()}
    arrays.update({f"stats/{k}": getattr(stats, k) for k in _STATS})
    store.save(header, arrays)


def _resume(store: Checkpoints, engine: Engine, stats: TrainStats,
            curves: list[list[CurvePoint]], t: Timings) -> int:
    """Load the job's checkpoint into ``engine``, ``stats``, ``curves`` and ``t``; return
    its training position (0 without one)."""
    saved = store.load()
    if saved is None or saved[0].get("positions") != stats.exc_spikes.shape[1]:
        return 0
    header, arrays = saved
    engine.load_state({k.removeprefix("state/"): v for k, v in arrays.items()
                       if k.startswith("state/")})
    for k in _STATS:
        getattr(stats, k)[...] = arrays[f"stats/{k}"]
    for mine, points in zip(curves, header["curves"]):
        mine.extend(CurvePoint(p["train_samples"], p["accuracy"]) for p in points)
    t.train, t.curve = header["train_seconds"], header["curve_seconds"]
    return int(header["position"])


def run_cells(cfgs: Sequence[CellConfig], ds: Dataset, *,
              execution: Execution = Execution(), on_progress: Progress | None = None,
              checkpoints: Checkpoints | None = None) -> list[Outcome]:
    """Train, label, evaluate and score ``cfgs`` (replicas of equal shapes) on ``ds``.

    With ``checkpoints`` (engines that continue from a state), training starts from the
    job's checkpoint when there is one and saves one as ``checkpoints`` says; the
    outcome is the same as without. Raises when the job as a whole fails (the caller
    records that for every cell); a replica that diverges gets its status, and its
    metrics, without scores.
    """
    plan = Plan.of(cfgs, ds)
    engine = plan.build(execution)
    K = plan.orders.shape[1]
    stats = TrainStats.zeros(len(cfgs), K)
    curves: list[list[CurvePoint]] = [[] for _ in cfgs]
    t = Timings()
    every = cfgs[0].curve_every if plan.trainer.curve else 0
    start = 0 if checkpoints is None else _resume(checkpoints, engine, stats, curves, t)
    t.resumed_at = start
    log = (None if execution.tensorboard is None else
           TensorBoardLog(execution.tensorboard, cfgs, ds.image_shape))
    if start and on_progress is not None:
        on_progress(start * len(cfgs))  # what the checkpoint already trained
    for lo, hi in curve_segments(K, every):
        if hi <= start:
            continue
        pos = max(lo, start)
        for stop in (checkpoints.boundaries(pos, hi) if checkpoints else [hi]):
            t0 = time.perf_counter()
            merge_stats(stats, plan.train(engine, pos, stop, on_progress), pos)
            t.train += time.perf_counter() - t0
            pos = stop
            if checkpoints is not None and stop < hi and checkpoints.due(stop):
                _save(checkpoints, engine, stop, stats, curves, t)
        if hi < K:
            t0 = time.perf_counter()
            # Settled or calibrated thresholds are measured, not trained on: training
            # goes on from the state before the freeze.
            trained = engine.state() if plan.settles or plan.calibrates else None
            plan.freeze(engine)
            labelled, tested = plan.respond(engine, on_progress)
            for r in range(len(cfgs)):
                if stats.diverged_at[r] == 0:
                    preds = plan.predictions(r, labelled, tested)
                    y = plan.test_labels(r)
                    curves[r].append(CurvePoint(hi, {n: accuracy(p, y)
                                                     for n, p in preds.items()}))
                    if log is not None:
                        log.point(r, hi, curves[r][-1].accuracy, engine.activity(r, tested),
                                  engine.state(), engine.arrays(r))
            if trained is not None:
                engine.load_state(trained)
            t.curve += time.perf_counter() - t0
            if checkpoints is not None and checkpoints.due(hi):
                _save(checkpoints, engine, hi, stats, curves, t)
    # Before the last responses: the baselines' encoders draw from a generator that
    # responding moves on, and a model file must answer as the evaluated network did.
    t0 = time.perf_counter()
    plan.freeze(engine)
    state = engine.state()
    labelled, tested = plan.respond(engine, on_progress)
    t.eval = time.perf_counter() - t0
    outcomes = [_outcome(plan, engine, r, stats, labelled, tested, curves[r], t,
                         {k: v[r:r + 1] for k, v in state.items()})
                for r in range(len(cfgs))]
    if log is not None:
        for r, out in enumerate(outcomes):
            log.point(r, K, {n: s.accuracy for n, s in out.readouts.items()}, out.metrics,
                      state, out.arrays or {})
        log.close()
    return outcomes


def _outcome(plan: Plan, engine: Engine, r: int, stats: TrainStats,
             labelled: Responses | None, tested: Responses, curve: list[CurvePoint],
             t: Timings, state: dict[str, np.ndarray]) -> Outcome:
    R = len(plan.cfgs)
    metrics: Metrics = {"n_test": int(plan.eval_orders.shape[1]),
                        **engine.activity(r, tested),
                        "train_seconds": t.train / R, "eval_seconds": t.eval / R,
                        "job_train_seconds": t.train, "job_eval_seconds": t.eval}
    if plan.trainer.curve:
        metrics["job_curve_seconds"] = t.curve
    metrics.update(engine.training_metrics(r, stats))
    if t.resumed_at:
        metrics["resumed_at_sample"] = t.resumed_at  # training before it was not redone
    status, error = status_of(stats, tested, r)
    out = Outcome(status, error, metrics)
    if status is Status.DIVERGED:
        return out  # non-finite weights are not worth scoring or keeping
    y = plan.test_labels(r)
    fitted = plan.fit_readouts(r, labelled)
    preds = apply_readouts(fitted, tested.replica(r), plan.ds.n_classes, plan.cfgs[r])
    out.readouts = {name: ReadoutScore(accuracy(p, y),
                                       confusion(y, p, plan.ds.n_classes).tolist())
                    for name, p in preds.items()}
    if plan.cfgs[r].curve_every and plan.trainer.curve:
        out.curve = curve + [CurvePoint(plan.orders.shape[1],
                                        {n: s.accuracy for n, s in out.readouts.items()})]
    out.arrays = engine.arrays(r)
    out.model = ModelParts(state, fitted, plan.gains[r])
    return out
