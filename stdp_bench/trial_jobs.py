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
from dataclasses import dataclass
from typing import Callable

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.data import cell_dataset, cell_subsets
from stdp_bench.engine.kernel_engine import ReplicaSet
from stdp_bench.readout import predict_readout
from stdp_bench.train import input_gains, scaled_progress, train_orders

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RungTask:
    """Train ``cfgs`` (one per trial, equal shapes) over positions ``lo:hi``, then score.

    ``W`` / ``theta`` hold the trials' state at ``lo`` (None when ``lo`` is 0).
    """

    trial_ids: tuple[int, ...]  # the driver's keys of the trials, row by row
    cfgs: tuple[CellConfig, ...]
    lo: int
    hi: int
    metric: str
    data_dir: str | None = None
    W: np.ndarray | None = None  # (R, n_input, n_neurons) float32
    theta: np.ndarray | None = None  # (R, n_neurons) float32
    plugins: tuple[str, ...] = ()  # the grid's level modules, for the worker to import

    def samples(self) -> int:
        """Network-samples the task simulates: training span, labelling and validation."""
        c = self.cfgs[0]
        return len(self.cfgs) * (self.hi - self.lo + c.n_label + c.n_test)


@dataclass(frozen=True)
class RungResult:
    """Scores of a task's trials at ``hi``, and the state to continue from."""

    accuracy: np.ndarray  # (R,) validation accuracy of the metric's readout
    status: tuple[str, ...]  # per trial: ok, silent, diverged or error
    exc_spikes_per_sample: np.ndarray  # (R,) on the validation samples
    seconds: float  # wall time of the whole task (training and scoring)
    error: str | None = None  # traceback when the whole task failed
    W: np.ndarray | None = None
    theta: np.ndarray | None = None


def run_rung(task: RungTask, on_progress: Progress | None = None) -> RungResult:
    """Train and score the task's trials; a failure gives every trial status ``error``.

    >>> from stdp_bench.config import CellConfig
    >>> cfg = CellConfig(dataset="digits", n_neurons=10, time=50, split="validation",
    ...                  n_train=40, n_label=50, n_test=50)
    >>> first = run_rung(RungTask((0,), (cfg,), 0, 20, "proportion_weighting"))
    >>> rest = run_rung(RungTask((0,), (cfg,), 20, 40, "proportion_weighting",
    ...                          W=first.W, theta=first.theta))
    >>> rest.status, 0.0 <= float(rest.accuracy[0]) <= 1.0
    (('ok',), True)
    """
    t0 = time.perf_counter()
    R = len(task.cfgs)
    try:
        cfgs = list(task.cfgs)
        ds = cell_dataset(cfgs[0], task.data_dir)
        subsets = [cell_subsets(ds, c) for c in cfgs]
        replicas = ReplicaSet(cfgs, ds.n_input, input_gains(cfgs, ds), ds.n_classes)
        if task.W is not None:
            # Copies: the kernel writes them, and Ray hands tasks read-only arrays.
            replicas.W = np.array(task.W, dtype=np.float32, order="C")
            replicas.theta = np.array(task.theta, dtype=np.float32, order="C")
        step = scaled_progress(on_progress, R)
        orders = np.ascontiguousarray(train_orders(cfgs, subsets)[:, task.lo:task.hi])
        stats = replicas.train(ds.x_train, ds.y_train, orders, start=task.lo,
                               on_progress=step)
        label_orders = np.stack([s.label for s in subsets])
        labelled = replicas.respond(ds.x_train, label_orders, phase=1, on_progress=step)
        eval_x, eval_y = subsets[0].eval_split(ds)
        eval_orders = np.stack([s.evaluate for s in subsets])
        tested = replicas.respond(eval_x, eval_orders, phase=2, on_progress=step)
        accuracy = np.zeros(R)
        status = []
        for r, cfg in enumerate(cfgs):
            if stats.diverged_at[r] > 0:
                status.append("diverged")  # accuracy stays 0: the network is gone
                continue
            pred = predict_readout(task.metric, labelled.counts[r],
                                   ds.y_train[label_orders[r]], labelled.events[r],
                                   labelled.n_events[r], tested.counts[r], tested.events[r],
                                   tested.n_events[r], ds.n_classes, cfg.ngram_n, cfg.seed)
            if pred is not None:
                accuracy[r] = float((pred == eval_y[eval_orders[r]]).mean())
            status.append("ok" if tested.counts[r].sum() > 0 else "silent")
        return RungResult(accuracy=accuracy, status=tuple(status),
                          exc_spikes_per_sample=tested.counts.sum(2).mean(1).astype(float),
                          seconds=time.perf_counter() - t0, W=replicas.W,
                          theta=replicas.theta)
    except Exception:  # noqa: BLE001 - any failure becomes a visible trial state
        return lost_rung(task, traceback.format_exc(), time.perf_counter() - t0)


def lost_rung(task: RungTask, error: str, seconds: float = 0.0) -> RungResult:
    """The result that stands for a task that failed or whose worker was lost."""
    R = len(task.cfgs)
    return RungResult(accuracy=np.zeros(R), status=("error",) * R,
                      exc_spikes_per_sample=np.zeros(R), seconds=seconds, error=error)
