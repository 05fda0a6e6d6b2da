"""Run a grid: expand, skip finished cells, run jobs, write each cell as it finishes."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pandas as pd

from stdp_bench.backends import JobContext, run_jobs
from stdp_bench.config import ConfigError
from stdp_bench.errors import OutputError
from stdp_bench.grid import Cell, Job, expand, group_jobs
from stdp_bench.orchestration import Dispatch, Session, run_in_folder
from stdp_bench.progress import progress_bar
from stdp_bench.results import done_record_keys, write_cell
from stdp_bench.checkpoints import checkpoint_path
from stdp_bench.execution import Execution
from stdp_bench.grid_file import GridSpec
from stdp_bench.records import CellRecord
from stdp_bench.train import job_samples


def limit_cells(cells: list[Cell], limit_train: int | None) -> list[Cell]:
    """Cap every cell's ``n_train`` (a new config, hence a new cell id)."""
    if limit_train is None:
        return cells
    if limit_train < 1:
        raise ConfigError(f"--limit-train {limit_train} must be at least 1")
    return [Cell(c.config.with_settings(n_train=min(c.config.n_train, limit_train)), c.levels)
            for c in cells]


def plan(grid: GridSpec, out_dir: Path, limit_train: int | None = None,
         max_replicas: int = 8, engine: str = "kernel") -> tuple[list[Cell], list[Job]]:
    """All cells of the grid, and the jobs still to run (finished cells skipped)."""
    cells = limit_cells(expand(grid), limit_train)
    return cells, pending_jobs(cells, out_dir, max_replicas, engine)


def pending_jobs(cells: list[Cell], out_dir: Path, max_replicas: int,
                 engine: str = "kernel") -> list[Job]:
    """Jobs of the cells that have no finished record in ``out_dir`` (grouped for
    ``engine``, ``Execution.engine``)."""
    done = done_record_keys(out_dir) if out_dir.exists() else set()
    return group_jobs([c for c in cells if c.record_key not in done], max_replicas, engine)


def run_grid(grid: GridSpec, out_dir: Path, *, data_dir: str | Path | None = None,
             limit_train: int | None = None, max_replicas: int = 8,
             progress: bool = True, execution: Execution = Execution(),
             backend: str = "local", workers: int = 1, address: str | None = None
             ) -> pd.DataFrame:
    """Run every unfinished cell of ``grid`` and return the tidy table.

    Each cell's record is written atomically by this process as soon as its job ends
    (whatever the backend), so a crash or Ctrl-C loses only the jobs in flight and
    rerunning the same command resumes. Jobs hold at most ``max_replicas`` cells: fewer
    means less lost to a crash and more parallelism across workers, more means fewer
    kernel calls (results do not depend on the grouping). The folder's lock, preflight
    and table are :func:`stdp_bench.orchestration.run_in_folder`'s.
    """
    out_dir = Path(out_dir)
    cells = limit_cells(expand(grid), limit_train)
    dispatch = Dispatch(backend=backend, workers=workers, address=address,
                        max_replicas=max_replicas, progress=progress)

    def execute(session: Session) -> None:
        jobs = pending_jobs(cells, out_dir, max_replicas, execution.engine)
        ctx = session.job_context(tuple(grid.factors), execution)
        execute_jobs(jobs, len(cells), session, ctx)

    return run_in_folder(grid, out_dir, check_cells=cells, data_dir=data_dir,
                         dispatch=dispatch, execute=execute)


def execute_jobs(jobs: list[Job], n_cells: int, session: Session, ctx: JobContext) -> None:
    """Run ``jobs`` on the session's backend and write each cell's record as its job
    ends (the session holds the folder's lock); ``n_cells`` counts the finished cells
    too, for the progress bar."""
    d = session.dispatch
    bar = progress_bar(sum(job_samples(j) for j in jobs), ctx.grid, enabled=d.progress)
    done = n_cells - sum(len(j.cells) for j in jobs)
    bar.set_postfix_str(f"{done}/{n_cells} cells")
    # closing: an interrupt stops the backend's workers here, not when the generator is
    # collected (which a traceback holding this frame would delay).
    try:
        with closing(run_jobs(jobs, ctx, session.backend,
                              on_progress=bar.update)) as finished:
            for records in finished:
                for record in records:
                    _write(session.out_dir, record)
                # A job that failed keeps its checkpoint: the rerun that retries it
                # resumes from it.
                if all(r.status.finished for r in records):
                    checkpoint_path(session.out_dir, tuple(r.key for r in records)
                                    ).unlink(missing_ok=True)
                done += len(records)
                bar.set_postfix_str(f"{done}/{n_cells} cells")
    finally:
        bar.close()


def _write(out_dir: Path, record: CellRecord) -> None:
    """Write one record; a full disk or lost permission stops the run with one line."""
    try:
        write_cell(out_dir, record)
    except OSError as exc:
        raise OutputError(
            f"cannot write results to {out_dir}: {exc.strerror or exc}; records written "
            "before this one are intact, and rerunning resumes after the cause is fixed"
        ) from None
