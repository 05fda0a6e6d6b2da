"""Tuning trials trained together as replicas, one rung at a time.

A :class:`RungTask` carries trials that share tensor shapes, the span of training
positions to add (``lo`` to ``hi``) and, after the first rung, the weights and
thresholds the trials reached: trials continue from where they stopped, they are not
restarted. Each trial is a cell on the validation protocol
(:meth:`stdp_bench.search_space.SearchSpec.trial_config`), so a trial trained to its last
rung in a batch scores exactly what the same cell scores alone through ``run``.
The task returns its state with its scores, so the driver can hold trials between
rungs whichever process or Ray node trained them.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.data import cell_dataset
from stdp_bench.execution import Execution
from stdp_bench.protocol import Plan, accuracy, status_of
from stdp_bench.records import Status
from stdp_bench.tensorboard_log import TensorBoardLog

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RungTask:
    """Train ``cfgs`` (one per trial, equal shapes) over positions ``lo:hi``, then score.

    ``state`` is the engine's state at ``lo`` (:meth:`Engine.state`; None when ``lo`` is
    0). ``execution`` picks the engine as it does for ``run``.
    """

    trial_ids: tuple[int, ...]  # the driver's keys of the trials, row by row
    cfgs: tuple[CellConfig, ...]
    lo: int
    hi: int
    metric: str
    data_dir: str | None = None
    state: dict[str, np.ndarray] | None = None
    execution: Execution = field(default_factory=Execution)
    plugins: tuple[str, ...] = ()  # the grid's level modules, for the worker to import

    def samples(self) -> int:
        """Network-samples the task simulates: training span, labelling and validation."""
        c = self.cfgs[0]
        return len(self.cfgs) * (self.hi - self.lo + c.n_label + c.n_test)


@dataclass(frozen=True)
class RungResult:
    """Scores of a task's trials at ``hi``, and the state to continue from."""

    accuracy: np.ndarray  # (R,) validation accuracy of the metric's readout
    status: tuple[Status, ...]  # per trial
    exc_spikes_per_sample: np.ndarray  # (R,) on the validation samples
    seconds: float  # wall time of the whole task (training and scoring)
    error: str | None = None  # traceback when the whole task failed
    state: dict[str, np.ndarray] | None = None


def run_rung(task: RungTask, on_progress: Progress | None = None) -> RungResult:
    """Train and score the task's trials; a failure gives every trial status ``error``.

    >>> from stdp_bench.config import CellConfig
    >>> cfg = CellConfig(dataset="digits", n_neurons=10, time=50, split="validation",
    ...                  n_train=40, n_label=50, n_test=50)
    >>> first = run_rung(RungTask((0,), (cfg,), 0, 20, "proportion_weighting"))
    >>> rest = run_rung(RungTask((0,), (cfg,), 20, 40, "proportion_weighting",
    ...                          state=first.state))
    >>> rest.status, 0.0 <= float(rest.accuracy[0]) <= 1.0
    ((<Status.OK: 'ok'>,), True)
    """
    t0 = time.perf_counter()
    R = len(task.cfgs)
    try:
        plan = Plan.of(task.cfgs, cell_dataset(task.cfgs[0], task.data_dir))
        engine = plan.build(task.execution)
        if task.state is not None:
            engine.load_state(task.state)
        stats = plan.train(engine, task.lo, task.hi, on_progress)
        # As at run's curve points: settled or calibrated thresholds are scored, and the
        # next rung continues from the network as trained.
        state = engine.state()
        plan.freeze(engine)
        labelled, tested = plan.respond(engine, on_progress)
        scores = np.zeros(R)
        status = []
        for r in range(R):
            st, _ = status_of(stats, tested, r)
            status.append(st)
            if st is Status.DIVERGED:
                continue  # accuracy stays 0: the network is gone
            pred = plan.predictions(r, labelled, tested, readouts=(task.metric,))
            if task.metric in pred:
                scores[r] = accuracy(pred[task.metric], plan.test_labels(r))
        if task.execution.tensorboard is not None:  # each trial's rungs, as curve points
            log = TensorBoardLog(task.execution.tensorboard, task.cfgs, plan.ds.image_shape)
            for r in range(R):
                log.point(r, task.hi, {task.metric: float(scores[r])},
                          engine.activity(r, tested), state, engine.arrays(r))
            log.close()
        return RungResult(accuracy=scores, status=tuple(status),
                          exc_spikes_per_sample=tested.counts.sum(2).mean(1).astype(float),
                          seconds=time.perf_counter() - t0, state=state)
    except Exception:  # noqa: BLE001 - any failure becomes a visible trial state
        return lost_rung(task, traceback.format_exc(), time.perf_counter() - t0)


def lost_rung(task: RungTask, error: str, seconds: float = 0.0) -> RungResult:
    """The result that stands for a task that failed or whose worker was lost."""
    R = len(task.cfgs)
    return RungResult(accuracy=np.zeros(R), status=(Status.ERROR,) * R,
                      exc_spikes_per_sample=np.zeros(R), seconds=seconds, error=error)
