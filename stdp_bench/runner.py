"""Run a grid: expand, skip finished cells, run jobs, write each cell as it finishes."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import tomli_w
from tqdm import tqdm

from stdp_bench.config import ConfigError
from stdp_bench.data import cell_dataset, cell_subsets
from stdp_bench.grid import Cell, Job, expand, group_jobs
from stdp_bench.grid_file import GridSpec
from stdp_bench.backends import JobContext, check_backend, run_jobs
from stdp_bench.results import done_record_keys, rebuild_tables, write_cell
from stdp_bench.execution import Execution
from stdp_bench.records import CellRecord
from stdp_bench.train import job_samples, pin_commit


def limit_cells(cells: list[Cell], limit_train: int | None) -> list[Cell]:
    """Cap every cell's ``n_train`` (a new config, hence a new cell id)."""
    if limit_train is None:
        return cells
    if limit_train < 1:
        raise ConfigError(f"--limit-train {limit_train} must be at least 1")
    return [Cell(c.config.with_settings(n_train=min(c.config.n_train, limit_train)), c.levels)
            for c in cells]


@contextmanager
def results_lock(out_dir: Path) -> Iterator[None]:
    """Refuse a second concurrent run on the same results folder."""
    lock = out_dir / ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            raise ConfigError(
                f"{out_dir} is in use by another run (pid {pid}); wait for it or remove "
                f"{lock} if that process is gone") from None
        lock.unlink(missing_ok=True)  # stale lock from a killed run
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def prepare_out_dir(grid: GridSpec, out_dir: Path) -> None:
    """Create the results folder, or check that an existing one belongs to this grid."""
    grid_file = out_dir / "grid.toml"
    if grid_file.exists():
        import tomllib

        try:
            old = tomllib.loads(grid_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{grid_file} is unreadable ({exc}); use another --out") from None
        if old.get("name") != grid.name:
            raise ConfigError(
                f"{out_dir} holds results of grid '{old.get('name')}', not '{grid.name}'; "
                "use another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None


def remove_stale_temp_files(out_dir: Path) -> None:
    """Delete temp files a killed run left behind (results.py writes ``.NAME.*.tmp`` and
    renames it). Only called under the lock, so no live writer owns them."""
    for tmp in out_dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_grid_file(grid: GridSpec, out_dir: Path) -> None:
    """Record the grid as run (under the lock, so a refused run cannot overwrite it)."""
    try:
        tmp = out_dir / ".grid.toml.tmp"
        tmp.write_text(tomli_w.dumps(grid.to_toml_dict()))
        os.replace(tmp, out_dir / "grid.toml")
    except OSError as exc:
        raise ConfigError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None


def preflight(cells: list[Cell], data_dir: str | Path | None) -> None:
    """Fail before any work if a dataset is missing or too small for a cell."""
    for cell in cells:
        cfg = cell.config
        ds = cell_dataset(cfg, data_dir)
        cell_subsets(ds, cfg)


def plan(grid: GridSpec, out_dir: Path, limit_train: int | None = None,
         max_replicas: int = 8) -> tuple[list[Cell], list[Job]]:
    """All cells of the grid, and the jobs still to run (finished cells skipped)."""
    cells = limit_cells(expand(grid), limit_train)
    return cells, pending_jobs(cells, out_dir, max_replicas)


def pending_jobs(cells: list[Cell], out_dir: Path, max_replicas: int) -> list[Job]:
    """Jobs of the cells that have no finished record in ``out_dir``."""
    done = done_record_keys(out_dir) if out_dir.exists() else set()
    return group_jobs([c for c in cells if c.record_key not in done], max_replicas)


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
    kernel calls (results do not depend on the grouping).
    """
    out_dir = Path(out_dir)
    if max_replicas < 1:
        raise ConfigError(f"--replicas {max_replicas} must be at least 1")
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    check_backend(backend, address)
    preflight(limit_cells(expand(grid), limit_train), data_dir)
    prepare_out_dir(grid, out_dir)
    with results_lock(out_dir):
        remove_stale_temp_files(out_dir)
        write_grid_file(grid, out_dir)
        cells, jobs = plan(grid, out_dir, limit_train, max_replicas)
        ctx = JobContext(grid=grid.name, factors=tuple(grid.factors),
                         data_dir=None if data_dir is None else str(data_dir),
                         execution=execution)
        try:
            execute_jobs(jobs, len(cells), out_dir, ctx, progress=progress,
                           backend=backend, workers=workers, address=address)
        finally:
            try:
                table = rebuild_tables(out_dir)
            except OSError as exc:  # raised after the loop's own error, if it had one
                table = None
                table_error = exc.strerror or str(exc)
    if table is None:
        raise ConfigError(f"cannot write the results table in {out_dir}: {table_error}; "
                          "the cell records are intact")
    return table


def execute_jobs(jobs: list[Job], n_cells: int, out_dir: Path, ctx: JobContext, *,
                   progress: bool = True, backend: str = "local", workers: int = 1,
                   address: str | None = None) -> None:
    """Run ``jobs`` and write each cell's record as its job ends (the caller holds the
    results lock); ``n_cells`` counts the finished cells too, for the progress bar."""
    # Provenance describes the checkout as the run starts: a file edited or a commit
    # made while it runs is not the code it loaded.
    pin_commit()
    total = sum(job_samples(j) for j in jobs)
    bar = tqdm(total=total, unit="sample", disable=not progress, smoothing=0.05,
               desc=f"{ctx.grid}: {sum(len(j.cells) for j in jobs)}/{n_cells} cells")
    try:
        for records in run_jobs(jobs, ctx, backend=backend, workers=workers,
                                address=address, on_progress=bar.update):
            for record in records:
                _write(out_dir, record)
    finally:
        bar.close()


def _write(out_dir: Path, record: CellRecord) -> None:
    """Write one record; a full disk or lost permission stops the run with one line."""
    try:
        write_cell(out_dir, record)
    except OSError as exc:
        raise ConfigError(
            f"cannot write results to {out_dir}: {exc.strerror or exc}; records written "
            "before this one are intact, and rerunning resumes after the cause is fixed"
        ) from None
