"""One results folder, one run at a time: the steps ``run`` and ``tune`` share.

:func:`run_in_folder` takes the command's own work as a callable and wraps it:

1. the dispatch options checked (``--replicas``, ``--workers``, ``--backend``, ``--address``,
   whose cluster must answer within seconds);
2. the commit pinned (records name the code the run loaded, whatever changes later);
3. preflight: every cell's dataset files present and large enough, from their headers;
4. the results folder created, or checked to hold this grid's results;
5. the lock taken (a second run on the folder is refused), stale temp files removed;
6. the command's check of the folder (``admit``: tune's studies agree with ``[search]``),
   then ``grid.toml`` written;
7. the command's work (``execute``) on one :class:`~stdp_bench.backends.Backend` for
   all its batches, then the tidy table rebuilt, even after a failure.

Nothing is written before step 4, and nothing but the folder itself before step 6.
"""

from __future__ import annotations

import os
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd
import tomli_w
from filelock import FileLock, Timeout

from stdp_bench.backends import Backend, JobContext, check_backend
from stdp_bench.ray_tasks import check_reachable
from stdp_bench.config import ConfigError
from stdp_bench.grid_file import GridSpec
from stdp_bench.data import check_subset_sizes, split_sizes
from stdp_bench.errors import OutputError
from stdp_bench.grid import Cell
from stdp_bench.provenance import checkout_commit
from stdp_bench.results import rebuild_tables
from stdp_bench.train import Execution

LOCK_NAME = ".lock"


@dataclass(frozen=True)
class Dispatch:
    """Where a run's jobs go and how large they are: the options run and tune share.

    >>> Dispatch(workers=0).check()
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: --workers 0 must be at least 1
    """

    backend: str = "local"
    workers: int = 1
    address: str | None = None
    max_replicas: int = 8  # most cells (or tuning trials) trained together in one job
    progress: bool = True

    def check(self) -> None:
        """Refuse impossible values, and an ``--address`` whose cluster does not answer,
        before anything is read or written."""
        if self.max_replicas < 1:
            raise ConfigError(f"--replicas {self.max_replicas} must be at least 1")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers} must be at least 1")
        check_backend(self.backend, self.address)
        if self.backend == "ray" and self.address:
            check_reachable(self.address)  # before the folder is made, not after minutes


@dataclass(frozen=True)
class Session:
    """What a command's work gets: the locked folder, the run's pins and its dispatch."""

    grid: GridSpec
    out_dir: Path
    data_dir: str | None
    commit: str | None  # pinned as the run started (provenance.checkout_commit)
    dispatch: Dispatch
    # Where the work's batches of tasks run: one set of worker processes, or one Ray
    # connection (or local instance), for the whole command, however many batches
    # (tune's rungs) it runs.
    backend: Backend

    def job_context(self, factors: tuple[str, ...], execution: Execution) -> JobContext:
        """The context every job of this run carries to its worker."""
        return JobContext(grid=self.grid.name, factors=factors, data_dir=self.data_dir,
                          execution=execution, commit=self.commit, plugins=self.grid.plugins,
                          out_dir=str(self.out_dir))


def run_in_folder(grid: GridSpec, out_dir: Path, *, check_cells: Sequence[Cell],
                  data_dir: str | Path | None, dispatch: Dispatch,
                  execute: Callable[[Session], None],
                  admit: Callable[[Path], None] | None = None) -> pd.DataFrame:
    """Run ``execute`` on ``out_dir`` under the steps of the module docstring and return
    the rebuilt tidy table.

    ``check_cells`` are the cells the preflight checks against their datasets;
    ``admit(out_dir)`` may refuse the folder under the lock, before ``grid.toml`` is
    written. A table that cannot be written raises :class:`OutputError` after
    ``execute`` returned; when ``execute`` raised, its error is the one that propagates.
    """
    out_dir = Path(out_dir)
    dispatch.check()
    commit = checkout_commit()
    preflight(check_cells, data_dir)
    prepare_out_dir(grid, out_dir)
    table: pd.DataFrame | None = None
    with results_lock(out_dir):
        remove_stale_temp_files(out_dir)
        if admit is not None:
            admit(out_dir)
        write_grid_file(grid, out_dir)
        try:
            # Closed before the table is rebuilt, as the batches' own workers are.
            with Backend(dispatch.backend, workers=dispatch.workers,
                         address=dispatch.address) as backend:
                execute(Session(grid=grid, out_dir=out_dir,
                                data_dir=None if data_dir is None else str(data_dir),
                                commit=commit, dispatch=dispatch, backend=backend))
        finally:
            try:
                table = rebuild_tables(out_dir)
            except OSError as exc:  # raised after execute's own error, if it had one
                table_error = exc.strerror or str(exc)
    if table is None:
        raise OutputError(f"cannot write the results table in {out_dir}: {table_error}; "
                          "the cell records are intact")
    return table


def preflight(cells: Sequence[Cell], data_dir: str | Path | None) -> None:
    """Fail before any work if a dataset is missing or too small for a cell, with the
    messages loading the dataset and drawing the cell's subsets would give.

    Sizes come from file headers and file counts (:func:`stdp_bench.data.split_sizes`),
    once per dataset: the driver of a run on a cluster need not hold the data in memory.
    """
    n_train: dict[str, int] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.dataset not in n_train:
            n_train[cfg.dataset] = split_sizes(cfg.dataset, data_dir)[0]
        check_subset_sizes(cfg.dataset, n_train[cfg.dataset], cfg.n_train, cfg.n_label,
                           cfg.n_test, cfg.split, cfg.label_source)


def prepare_out_dir(grid: GridSpec, out_dir: Path) -> None:
    """Create the results folder, or check that an existing one belongs to this grid."""
    grid_file = out_dir / "grid.toml"
    if grid_file.exists():
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
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None


@contextmanager
def results_lock(out_dir: Path) -> Iterator[None]:
    """Refuse a second concurrent run on the same results folder.

    An OS file lock (``filelock``) on ``out_dir/.lock``: the OS drops it when the
    holding process ends, however it ends, so a killed run leaves no stale lock; the
    file itself may stay and means nothing.
    """
    lock = FileLock(out_dir / LOCK_NAME)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise ConfigError(f"{out_dir} is in use by another run; wait for it to finish"
                          ) from None
    except OSError as exc:
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


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
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
