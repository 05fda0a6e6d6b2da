"""Run one job through the protocol and build its cells' records; provenance."""

from __future__ import annotations

import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from stdp_bench.checkpoints import Checkpoints
from stdp_bench.data import Dataset, cell_dataset
from stdp_bench.execution import Execution
from stdp_bench.grid import Cell, Job
from stdp_bench.protocol import cell_samples, run_cells
from stdp_bench.provenance import versions
from stdp_bench.records import CellRecord, Provenance, Status
from stdp_bench.trainers import trainer_of

Progress = Callable[[int], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def job_samples(job: Job) -> int:
    """Network-samples a job simulates (for progress bars)."""
    return cell_samples([c.config for c in job.cells])


def base_record(cell: Cell, grid: str, factors: list[str], ds: Dataset | None,
                started: str, job: Job, execution: Execution, engine: str,
                commit: str | None) -> CellRecord:
    """A cell's record before its results: settings, input, provenance (``commit`` is
    the one the run pinned as it started)."""
    cfg = cell.config
    return CellRecord(
        cell_id=cell.cell_id, grid=grid, factors=list(factors), settings=cfg.to_dict(),
        image_shape=list(ds.image_shape) if ds is not None else None,
        input_shape=list(ds.input_shape) if ds is not None else None,
        n_classes=ds.n_classes if ds is not None else None,
        provenance=Provenance(
            seed=cfg.seed, config_hash=cell.cell_id, versions=dict(versions()),
            commit=commit, started=started, job_id=job.job_id,
            replicas=len(job.cells),
            # The fused kernel runs on the CPU whatever the execution's device.
            device="cpu" if engine == "kernel" else execution.device, engine=engine),
        stage=cell.stage)


def error_records(job: Job, grid: str, factors: list[str], error: str,
                  ds: Dataset | None = None, started: str | None = None,
                  execution: Execution = Execution(), engine: str | None = None,
                  status: Status = Status.ERROR, commit: str | None = None
                  ) -> list[CellRecord]:
    """A record with ``status`` (error) and the message for every cell of ``job``.

    ``engine`` is the one that failed; None when none was picked yet (the record then
    names the execution's).
    """
    records = []
    for cell in job.cells:
        rec = base_record(cell, grid, factors, ds, started or _now(), job, execution,
                          engine or execution.engine, commit)
        rec.fail(status, error)
        rec.provenance.ended = _now()
        records.append(rec)
    return records


def run_job(job: Job, *, grid: str, factors: list[str],
            data_dir: str | Path | None = None, on_progress: Progress | None = None,
            execution: Execution = Execution(), commit: str | None = None,
            checkpoints_in: str | Path | None = None) -> list[CellRecord]:
    """Train, label and evaluate every cell of ``job`` (:mod:`stdp_bench.protocol`);
    never raises for a cell's failure. ``commit`` is what the records name as the code
    that ran: the checkout the driver pinned as the run started
    (:func:`stdp_bench.provenance.checkout_commit`), passed in explicitly so that a
    worker on another machine names the same one. With ``checkpoints_in`` (the results
    folder), a job whose engine continues from a state keeps a checkpoint there
    (:mod:`stdp_bench.checkpoints`, as ``execution`` says) and resumes from it.

    A failure of the whole job (bad data, a crash in the kernel, a plugin whose trainer
    cannot be loaded) gives every cell a record with status ``error`` and the traceback,
    so the grid goes on; a loss that stops being finite gives status ``diverged``.
    Records carry their arrays (``CellRecord.arrays``) for the driver to write
    (:func:`stdp_bench.results.write_cell`); nothing is written here.
    """
    started = _now()
    ds: Dataset | None = None
    engine: str | None = None
    cfgs = [c.config for c in job.cells]
    try:
        engine = trainer_of(cfgs[0]).engine_name(cfgs, execution)
        ds = cell_dataset(cfgs[0], data_dir)
        store = None
        if checkpoints_in is not None and trainer_of(cfgs[0]).resumable:
            store = Checkpoints(Path(checkpoints_in), tuple(c.record_key for c in job.cells),
                                every=execution.checkpoint_every,
                                seconds=60.0 * execution.checkpoint_minutes)
        outcomes = run_cells(cfgs, ds, execution=execution, on_progress=on_progress,
                             checkpoints=store)
    except FloatingPointError:
        return error_records(job, grid, factors, traceback.format_exc(), ds, started,
                             execution, engine, Status.DIVERGED, commit)
    except Exception:  # noqa: BLE001 - any failure becomes a visible record
        return error_records(job, grid, factors, traceback.format_exc(), ds, started,
                             execution, engine, commit=commit)
    records = []
    for cell, out in zip(job.cells, outcomes):
        rec = base_record(cell, grid, factors, ds, started, job, execution, engine, commit)
        rec.status, rec.error, rec.metrics = out.status, out.error, out.metrics
        rec.readouts, rec.curve, rec.arrays = out.readouts, out.curve, out.arrays
        rec.model = out.model
        rec.provenance.ended = _now()
        records.append(rec)
    return records
