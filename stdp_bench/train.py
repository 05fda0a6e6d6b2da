"""Run one job: train its cells as replicas, label, evaluate, and build their records."""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.data import Dataset, Subsets, cell_dataset, cell_subsets
from stdp_bench.engine.kernel_engine import ReplicaSet
from stdp_bench.engine.responses import Responses, TrainStats
from stdp_bench.grid import Cell, Job
from stdp_bench.levels import registry
from stdp_bench.provenance import versions
from stdp_bench.readout import confusion, feature_predictions, predict_all
from stdp_bench.replica_params import auto_gain

Progress = Callable[[int], None]

ENGINES = ("auto", "kernel", "torch")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Execution:
    """Where and how jobs run: ``device`` cpu or cuda, ``engine`` kernel or torch.

    ``kernel`` is the fused numba engine (CPU); ``torch`` the BindsNET replica
    ``Network`` (:mod:`stdp_bench.engine.torch_engine`), the engine for CUDA. ``pinned``
    is True when the user chose the engine: otherwise a Diehl & Cook job whose levels
    lack kernel steps runs on the torch engine instead (:func:`job_engine`).
    """

    device: str = "cpu"
    engine: str = "kernel"
    pinned: bool = False

    @classmethod
    def resolve(cls, device: str = "auto", engine: str = "auto") -> "Execution":
        """Pick concrete values; ``auto`` means CUDA when present, else the CPU kernel."""
        import torch

        if device not in DEVICES:
            raise ConfigError(f"--device {device!r} is not allowed; allowed: {', '.join(DEVICES)}")
        if engine not in ENGINES:
            raise ConfigError(f"--engine {engine!r} is not allowed; allowed: {', '.join(ENGINES)}")
        has_cuda = torch.cuda.is_available()
        if device == "cuda" and not has_cuda:
            raise ConfigError("--device cuda: torch sees no CUDA device here; use --device cpu "
                              "or auto")
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
        pinned = engine != "auto"
        if engine == "auto":
            engine = "torch" if device == "cuda" else "kernel"
        if engine == "kernel" and device != "cpu":
            raise ConfigError("--engine kernel runs on the CPU only; use --engine torch on cuda")
        return cls(device=device, engine=engine, pinned=pinned)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def job_samples(job: Job) -> int:
    """Network-samples a job simulates (for progress bars): replicas x presentations."""
    c = job.cells[0].config
    if registry.get("architecture", c.architecture).trainer == "baseline":
        return c.n_train * c.epochs + c.n_test
    evaluations = len(curve_segments(c.n_train * c.epochs, c.curve_every))
    return len(job.cells) * (c.n_train * c.epochs + evaluations * (c.n_label + c.n_test))


def input_gains(cfgs: list[CellConfig], ds: Dataset) -> list[float]:
    """Each replica's input current gain: its ``input_gain``, or its encoder's auto gain."""
    return [c.input_gain if c.input_gain > 0
            else auto_gain(c.encoder, ds.x_train, c.intensity_hz, c.time, c.dt)
            for c in cfgs]


def train_orders(cfgs: list[CellConfig], subsets: list[Subsets]) -> np.ndarray:
    """Presentation order per replica: the training subset, reshuffled each later epoch."""
    rows = []
    for cfg, sub in zip(cfgs, subsets):
        parts = [sub.train]
        for epoch in range(1, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch, 31])
            parts.append(rng.permutation(sub.train))
        rows.append(np.concatenate(parts))
    return np.stack(rows)


def score(preds: dict[str, np.ndarray], y: np.ndarray, n_classes: int
          ) -> dict[str, dict[str, Any]]:
    """Accuracy and confusion matrix of every readout's predictions."""
    return {name: {"accuracy": float((p == y).mean()),
                   "confusion": confusion(y, p, n_classes).tolist()}
            for name, p in preds.items()}


def job_engine(cfgs: list[CellConfig], execution: Execution) -> str:
    """The engine that runs a Diehl & Cook job: the chosen one, unless its levels lack
    that engine's steps and the user did not pin it (then the other one).

    Both engines encode with the encoders' kernel steps; the kernel engine also needs the
    neuron's and rule's kernel steps, the torch engine their torch twins.

    >>> cfgs = [CellConfig(rule="stdp")]
    >>> job_engine(cfgs, Execution()), job_engine(cfgs, Execution(engine="torch"))
    ('kernel', 'torch')
    """
    needs = {"kernel": {"encoder": "kernel", "neuron": "kernel", "rule": "kernel"},
             "torch": {"encoder": "kernel", "neuron": "torch", "rule": "torch"}}

    def missing(engine: str) -> list[str]:
        gaps = [f"{axis} {getattr(c, axis)!r}" for c in cfgs
                for axis, attr in needs[engine].items()
                if not getattr(registry.get(axis, getattr(c, axis)), attr)]
        return list(dict.fromkeys(gaps))

    chosen = execution.engine
    other = "torch" if chosen == "kernel" else "kernel"
    if not missing(chosen):
        return chosen
    if execution.pinned or missing(other):
        hint = f"run it with --engine {other}" if not missing(other) else "no engine runs it"
        raise ConfigError(f"{', '.join(missing(chosen))}: no steps for the {chosen} engine; "
                          f"{hint}")
    return other


# What actually simulates a cell, by family and architecture (records state it).
FEATURE_ENGINE = "bindsnet"  # conv / local: one BindsNET Network per cell
BASELINE_ENGINE = "autograd"  # ann / surrogate: torch autograd


def _base_record(cell: Cell, grid: str, factors: list[str], ds: Dataset | None,
                 started: str, job: Job, execution: Execution,
                 engine: str, commit: str | None) -> dict[str, Any]:
    cfg = cell.config
    return {
        "schema": 1,
        "cell_id": cell.cell_id,
        "grid": grid,
        "status": "ok",
        "error": None,
        "factors": list(factors),
        "settings": cfg.to_dict(),
        "image_shape": list(ds.image_shape) if ds is not None else None,
        # What the input layer sees: (channels, height, width), and the class count.
        "input_shape": list(ds.input_shape) if ds is not None else None,
        "n_classes": ds.n_classes if ds is not None else None,
        "metrics": {},
        "readouts": {},
        "provenance": {
            "seed": cfg.seed,
            "config_hash": cell.cell_id,
            "versions": versions(),
            "commit": commit,
            "started": started,
            "ended": None,
            "job_id": job.job_id,
            "replicas": len(job.cells),
            # The fused kernel runs on the CPU whatever the execution's device.
            "device": "cpu" if engine == "kernel" else execution.device,
            "engine": engine,
        },
        "artifacts": {},
    } | ({"stage": cell.stage} if cell.stage is not None else {})


def error_records(job: Job, grid: str, factors: list[str], error: str,
                  ds: Dataset | None = None, started: str | None = None,
                  execution: Execution = Execution(),
                  engine: str | None = None, *,
                  commit: str | None = None) -> list[dict[str, Any]]:
    """A record with status ``error`` and the message for every cell of ``job``.

    ``engine`` is the one that failed; None when none was picked yet (the record then
    names the execution's). ``commit`` is the one the run pinned (:func:`run_job`).
    """
    records = []
    for cell in job.cells:
        rec = _base_record(cell, grid, factors, ds, started or _now(), job, execution,
                           engine or execution.engine, commit)
        rec.update(status="error", error=error)
        rec["provenance"]["ended"] = _now()
        records.append(rec)
    return records


def run_job(job: Job, *, grid: str, factors: list[str],
            data_dir: str | Path | None = None, on_progress: Progress | None = None,
            execution: Execution = Execution(),
            commit: str | None = None) -> list[dict[str, Any]]:
    """Train, label and evaluate every cell of ``job``; never raises for a cell's failure.

    A failure of the whole job (bad data, a crash in the kernel) gives every cell a
    record with status ``error`` and the traceback, so the grid goes on. Records carry
    their weight arrays in ``record["_arrays"]`` for the driver to write
    (:func:`stdp_bench.results.write_cell`); nothing is written here.

    ``commit`` is what the records name as the code that ran: the checkout the driver
    pinned as the run started (:func:`stdp_bench.provenance.checkout_commit`), passed in
    because a worker's own checkout may have changed since, or be another node's.
    """
    trainer = registry.get("architecture", job.cells[0].config.architecture).trainer
    if trainer != "replicas":
        run_cell = {"baseline": _run_baseline, "features": _run_feature_cell}[trainer]
        return [run_cell(cell, job, grid=grid, factors=factors, data_dir=data_dir,
                         on_progress=on_progress, execution=execution, commit=commit)
                for cell in job.cells]
    started = _now()
    ds: Dataset | None = None
    engine: str | None = None
    try:
        cfgs = [c.config for c in job.cells]
        engine = job_engine(cfgs, execution)
        ds = cell_dataset(cfgs[0], data_dir)
        subsets = [cell_subsets(ds, c) for c in cfgs]
        gains = input_gains(cfgs, ds)
        if engine == "torch":
            from stdp_bench.engine.torch_engine import TorchReplicaSet

            replicas = TorchReplicaSet(cfgs, ds.n_input, gains, ds.n_classes,
                                       device=execution.device)
        else:
            replicas = ReplicaSet(cfgs, ds.n_input, gains, ds.n_classes)

        orders = train_orders(cfgs, subsets)
        label_orders = np.stack([s.label for s in subsets])
        eval_x, eval_y = subsets[0].eval_split(ds)
        eval_orders = np.stack([s.evaluate for s in subsets])
        progress = scaled_progress(on_progress, len(cfgs))

        def evaluate():
            labelled = replicas.respond(ds.x_train, label_orders, phase=1,
                                        on_progress=progress)
            return labelled, replicas.respond(eval_x, eval_orders, phase=2,
                                              on_progress=progress)

        K = orders.shape[1]
        stats = TrainStats.zeros(len(cfgs), K)
        curves: list[list[dict[str, Any]]] = [[] for _ in cfgs]
        train_s = curve_s = 0.0
        for lo, hi in curve_segments(K, cfgs[0].curve_every):
            t0 = time.perf_counter()
            part = replicas.train(ds.x_train, ds.y_train, orders[:, lo:hi], start=lo,
                                  on_progress=progress)
            train_s += time.perf_counter() - t0
            merge_stats(stats, part, lo)
            if hi < K:
                t0 = time.perf_counter()
                labelled, tested = evaluate()
                for r, cfg in enumerate(cfgs):
                    if stats.diverged_at[r] == 0:
                        curves[r].append(curve_point(hi, labelled, tested, r, ds, label_orders,
                                                     eval_y[eval_orders[r]], cfg))
                curve_s += time.perf_counter() - t0

        t0 = time.perf_counter()
        labelled, tested = evaluate()
        eval_s = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - any failure becomes a visible record
        return error_records(job, grid, factors, traceback.format_exc(), ds, started,
                             execution, engine, commit=commit)

    records = []
    R = len(job.cells)
    for r, cell in enumerate(job.cells):
        cfg = cell.config
        rec = _base_record(cell, grid, factors, ds, started, job, execution, engine, commit)
        try:
            n = cfg.n_neurons
            counts = tested.counts[r]
            exc_per = counts.sum(1)
            in_per = tested.in_spikes[r]
            rec["metrics"] = {
                "n_test": int(len(eval_orders[r])),
                "exc_spikes_per_sample": float(exc_per.mean()),
                "silent_fraction": float((exc_per == 0).mean()),
                "input_spikes_per_sample": float(in_per.mean()),
                # Accumulates: each input spike reaches n excitatory neurons, each
                # excitatory spike one inhibitory neuron, and each inhibitory spike n - 1
                # excitatory ones (the exc->inh weight makes every excitatory spike fire
                # its partner, so inhibitory spikes are counted as excitatory ones).
                "synops_per_sample": float((in_per * n + exc_per * n).mean()),
                "train_seconds": train_s / R,
                "eval_seconds": eval_s / R,
                "job_train_seconds": train_s,
                "job_eval_seconds": eval_s,
                "job_curve_seconds": curve_s,
                "input_gain": float(gains[r]),
                "retries_per_sample": float(stats.retries[r].mean()),
                "train_exc_spikes_per_sample": float(stats.exc_spikes[r].mean()),
                "train_input_spikes_per_sample": float(stats.in_spikes[r].mean()),
                "diverged_at_sample": int(stats.diverged_at[r]) or None,
            }
            if stats.diverged_at[r] > 0:
                rec["status"] = "diverged"
                rec["error"] = (f"non-finite weights or thresholds at training sample "
                                f"{int(stats.diverged_at[r])}")
            else:
                y_test = eval_y[eval_orders[r]]
                preds = replica_predictions(labelled, tested, r, ds, label_orders, cfg)
                rec["readouts"] = score(preds, y_test, ds.n_classes)
                if cfg.curve_every:
                    rec["curve"] = curves[r] + [
                        {"train_samples": K, "accuracy": {name: v["accuracy"] for name, v
                                                          in rec["readouts"].items()}}]
                if exc_per.sum() == 0:
                    rec["status"] = "silent"
                    rec["error"] = "no excitatory spike on the test set"
            if rec["status"] != "diverged":  # non-finite weights are not worth keeping
                rec["_arrays"] = {"weights": np.asarray(replicas.W[r]).astype(np.float16)}
        except Exception:  # noqa: BLE001
            rec["status"] = "error"
            rec["error"] = traceback.format_exc()
        rec["provenance"]["ended"] = _now()
        records.append(rec)
    return records


def curve_segments(K: int, every: int) -> list[tuple[int, int]]:
    """Training positions ``[lo, hi)`` between learning-curve points (one segment when
    ``every`` is 0).

    >>> curve_segments(10, 4), curve_segments(10, 0), curve_segments(8, 4)
    ([(0, 4), (4, 8), (8, 10)], [(0, 10)], [(0, 4), (4, 8)])
    """
    stops = [*range(every, K, every), K] if every else [K]
    return list(zip([0, *stops[:-1]], stops))


def merge_stats(stats: TrainStats, part: TrainStats, lo: int) -> None:
    """Copy a segment's statistics (positions ``lo..``) into ``stats``; a replica keeps
    the first position at which it diverged."""
    hi = lo + part.exc_spikes.shape[1]
    stats.exc_spikes[:, lo:hi] = part.exc_spikes
    stats.in_spikes[:, lo:hi] = part.in_spikes
    stats.retries[:, lo:hi] = part.retries
    first = stats.diverged_at == 0
    stats.diverged_at[first] = part.diverged_at[first]


def replica_predictions(labelled: Responses, tested: Responses, r: int, ds: Dataset,
                        label_orders: np.ndarray, cfg: CellConfig) -> dict[str, np.ndarray]:
    """Every readout's test predictions for replica r, fitted on its labelling responses."""
    return predict_all(labelled.counts[r], ds.y_train[label_orders[r]], labelled.events[r],
                       labelled.n_events[r], tested.counts[r], tested.events[r],
                       tested.n_events[r], ds.n_classes, cfg.ngram_n, cfg.seed)


def curve_point(samples: int, labelled: Responses, tested: Responses, r: int, ds: Dataset,
                label_orders: np.ndarray, y_test: np.ndarray, cfg: CellConfig
                ) -> dict[str, Any]:
    """Every readout's test accuracy for replica r after ``samples`` presentations."""
    preds = replica_predictions(labelled, tested, r, ds, label_orders, cfg)
    return {"train_samples": samples,
            "accuracy": {name: float((p == y_test).mean()) for name, p in preds.items()}}


def scaled_progress(cb: Progress | None, factor: int) -> Progress | None:
    """``cb`` counting ``factor`` network-samples per sample (one per replica)."""
    if cb is None:
        return None
    return lambda k: cb(k * factor)


def _run_baseline(cell: Cell, job: Job, *, grid: str, factors: list[str],
                  data_dir: str | Path | None, on_progress: Progress | None,
                  execution: Execution, commit: str | None) -> dict[str, Any]:
    """Train and score one gradient-trained baseline cell (family ann or surrogate)."""
    from stdp_bench.baselines import train_baseline

    cfg = cell.config
    started = _now()
    ds: Dataset | None = None
    rec: dict[str, Any] = {}
    try:
        ds = cell_dataset(cfg, data_dir)
        rec = _base_record(cell, grid, factors, ds, started, job, execution, BASELINE_ENGINE,
                           commit)
        sub = cell_subsets(ds, cfg)
        eval_x, eval_y = sub.eval_split(ds)
        eval_y = eval_y[sub.evaluate]
        result = train_baseline(cfg, ds.x_train[sub.train], ds.y_train[sub.train],
                                eval_x[sub.evaluate], ds.input_shape, ds.n_classes,
                                device=execution.device, on_progress=on_progress)
        rec["metrics"] = result.metrics
        rec["readouts"] = score({"output": result.predictions}, eval_y, ds.n_classes)
    except Exception as exc:  # noqa: BLE001 - any failure becomes a visible record
        if not rec:
            rec = _base_record(cell, grid, factors, ds, started, job, execution,
                               BASELINE_ENGINE, commit)
        rec["status"] = "diverged" if isinstance(exc, FloatingPointError) else "error"
        rec["error"] = traceback.format_exc()
    rec["provenance"]["ended"] = _now()
    if cfg.family == "surrogate":
        rec["provenance"]["versions"] = {**rec["provenance"]["versions"],
                                         "snntorch": _version("snntorch")}
    return rec


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "missing"


def _run_feature_cell(cell: Cell, job: Job, *, grid: str, factors: list[str],
                      data_dir: str | Path | None, on_progress: Progress | None,
                      execution: Execution, commit: str | None) -> dict[str, Any]:
    """Train, label and evaluate one conv / local cell (stock BindsNET layers)."""
    from stdp_bench.engine.feature_engine import FeatureCell

    cfg = cell.config
    started = _now()
    ds: Dataset | None = None
    try:
        ds = cell_dataset(cfg, data_dir)
        rec = _base_record(cell, grid, factors, ds, started, job, execution, FEATURE_ENGINE,
                           commit)
        sub = cell_subsets(ds, cfg)
        fc = FeatureCell(cfg, ds.input_shape, 1.0, ds.n_classes, device=execution.device)
        t0 = time.perf_counter()
        stats = fc.train(ds.x_train, ds.y_train, train_orders([cfg], [sub])[0],
                         on_progress=on_progress)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        labelled = fc.respond(ds.x_train, sub.label, phase=1, on_progress=on_progress)
        eval_x, eval_y = sub.eval_split(ds)
        eval_y = eval_y[sub.evaluate]
        tested = fc.respond(eval_x, sub.evaluate, phase=2, on_progress=on_progress)
        eval_s = time.perf_counter() - t0
        counts = tested.counts[0]
        exc_per = counts.sum(1)
        in_per = tested.in_spikes[0]
        F, H, W = fc.shape
        k2 = cfg.kernel_size ** 2
        rec["metrics"] = {
            "n_test": int(len(sub.evaluate)),
            "n_excitatory": int(fc.n),
            "exc_spikes_per_sample": float(exc_per.mean()),
            "silent_fraction": float((exc_per == 0).mean()),
            "input_spikes_per_sample": float(in_per.mean()),
            # An input spike reaches the filters of every location whose field holds it
            # (about F * k^2 * H * W / (image height x width) of them, in any channel); a
            # spike inhibits the F - 1 other maps at its location.
            "synops_per_sample": float((in_per * F * k2 * H * W / math.prod(ds.image_shape)
                                        + exc_per * (F - 1)).mean()),
            "train_seconds": train_s,
            "eval_seconds": eval_s,
            "job_train_seconds": train_s,
            "job_eval_seconds": eval_s,
            "train_exc_spikes_per_sample": float(stats.exc_spikes[0].mean()),
            "diverged_at_sample": int(stats.diverged_at[0]) or None,
        }
        if stats.diverged_at[0] > 0:
            rec["status"] = "diverged"
            rec["error"] = (f"non-finite weights or thresholds at training sample "
                            f"{int(stats.diverged_at[0])}")
        else:
            label_y = ds.y_train[sub.label]
            preds = predict_all(labelled.counts[0], label_y, labelled.events[0],
                                labelled.n_events[0], counts, tested.events[0],
                                tested.n_events[0], ds.n_classes, cfg.ngram_n, cfg.seed)
            preds.update(feature_predictions(labelled.counts[0], label_y, counts, fc.shape,
                                             cfg.pool, ds.n_classes, cfg.seed))
            rec["readouts"] = score(preds, eval_y, ds.n_classes)
            if exc_per.sum() == 0:
                rec["status"] = "silent"
                rec["error"] = "no excitatory spike on the test set"
            rec["_arrays"] = {"filters": fc.filters().astype(np.float16)}
    except Exception:  # noqa: BLE001 - any failure becomes a visible record
        return error_records(job, grid, factors, traceback.format_exc(), ds, started,
                             execution, FEATURE_ENGINE, commit=commit)[0]
    rec["provenance"]["ended"] = _now()
    return rec
