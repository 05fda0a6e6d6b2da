"""Where jobs run: in this process, in local worker processes, or as Ray tasks.

Every backend yields each job's records as soon as that job ends; the driver (the
runner) is the only writer of the results folder, so workers never touch it and a
cluster's nodes need not share a file system with the driver. Weight arrays travel back
inside the records (``CellRecord.arrays``) and the driver writes them.

* ``local`` with ``workers = 1`` runs jobs one after another in this process, with a
  per-sample progress bar.
* ``local`` with ``workers = N > 1`` runs N jobs at once in spawned processes. A worker
  that dies (killed, out of memory) takes its job down with it; the pool is rebuilt and
  the job retried, up to ``max_retries`` times, before the job's cells get ``error``
  records.
* ``ray`` submits every job as a Ray task (``num_cpus`` per task, a GPU when the
  execution device is cuda). Ray retries a task whose worker died (``max_retries``); a
  task that still fails gives its cells ``error`` records. ``address`` joins a running
  cluster (``auto`` or ``HOST:PORT``); without one a local Ray instance is started.
  Every node needs stdp_bench installed and the data root at the same path.

What a worker needs besides its task travels inside it, never in environment variables:
a job's :class:`JobContext` carries the commit the driver pinned and the grid's plugin
modules, which the worker imports before it runs the job.

Grid jobs and tuning rungs are both tasks of a :class:`TaskKind`, which says how to run
one, how much progress it counts for, and what stands for it when it is lost.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from typing import Any, Callable, Generic, TypeVar

from stdp_bench.config import ConfigError
from stdp_bench.grid import Job
from stdp_bench.execution import Execution
from stdp_bench.levels import registry
from stdp_bench.records import CellRecord
from stdp_bench.train import error_records, job_samples, run_job

BACKENDS = ("local", "ray")
Progress = Callable[[int], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class JobContext:
    """What every job needs besides its cells (picklable: it travels to workers).

    ``commit`` is the checkout the driver pinned as the run started, named by every
    record; ``plugins`` the grid's level modules, imported by the worker before it runs
    the job (a spawned process or a Ray worker knows only the built-in and installed
    levels).
    """

    grid: str
    factors: tuple[str, ...]
    data_dir: str | None
    execution: Execution
    commit: str | None
    plugins: tuple[str, ...]
    # The results folder, where jobs keep their checkpoints (None: no checkpoints).
    out_dir: str | None = None


@dataclass(frozen=True)
class TaskKind(Generic[T, R]):
    """How to run one kind of task on any backend.

    ``run(task, on_progress)`` does the work (a module-level function or a
    ``functools.partial`` of one, so it pickles to workers); ``size(task)`` is the
    progress it counts for when it runs elsewhere; ``lost(task, message)`` is the result
    that stands for a task whose worker died beyond its retries.
    """

    run: Callable[[T, Progress | None], R]
    size: Callable[[T], int]
    lost: Callable[[T, str], R]


def _run(job: Job, on_progress: Progress | None, ctx: JobContext) -> list[CellRecord]:
    # Wherever this runs (this process, a spawned worker, a Ray node): the grid's levels
    # must be registered before the job's cells are looked up.
    registry.load_plugins(ctx.plugins)
    return run_job(job, grid=ctx.grid, factors=list(ctx.factors), data_dir=ctx.data_dir,
                   on_progress=on_progress, execution=ctx.execution, commit=ctx.commit,
                   checkpoints_in=ctx.out_dir)


def _lost_job(job: Job, message: str, ctx: JobContext) -> list[CellRecord]:
    return error_records(job, ctx.grid, list(ctx.factors), message, commit=ctx.commit)


def grid_jobs(ctx: JobContext) -> TaskKind[Job, list[CellRecord]]:
    """Grid jobs: each yields its cells' records (error records for a lost job)."""
    return TaskKind(run=partial(_run, ctx=ctx), size=job_samples,
                    lost=partial(_lost_job, ctx=ctx))


def _set_threads(threads: int) -> None:
    """Numba and torch threads of this process (numba is already imported by now, so its
    environment variable would come too late; ``set_num_threads`` works at run time)."""
    import numba
    import torch

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(max(1, threads))


def _worker_init(threads: int) -> None:
    # N workers share the machine's cores: each gets its share of the threads.
    _set_threads(threads)


def run_local(tasks: list[T], kind: TaskKind[T, R], *, workers: int = 1,
              max_retries: int = 2, on_progress: Progress | None = None
              ) -> Iterator[tuple[T, R]]:
    """Yield ``(task, result)`` as each task finishes, running ``workers`` at a time."""
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    if workers == 1:
        for task in tasks:
            yield task, kind.run(task, on_progress)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    attempts = {id(task): 0 for task in tasks}
    pending = list(tasks)
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=_worker_init, initargs=(threads,))
        futures: dict[Future, Any] = {pool.submit(kind.run, task, None): task
                                      for task in pending}
        pending = []
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        # A worker died; every task still in this pool is lost with it.
                        attempts[id(task)] += 1
                        if attempts[id(task)] > max_retries:
                            yield task, kind.lost(task, f"worker process died "
                                                        f"{attempts[id(task)]} times "
                                                        "running this job")
                        else:
                            pending.append(task)
                        continue
                    if on_progress is not None:
                        on_progress(kind.size(task))
                    yield task, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def run_ray(tasks: list[T], kind: TaskKind[T, R], *, address: str | None = None,
            num_cpus: int | None = None, cpus_per_job: float = 1.0, max_retries: int = 3,
            gpus_per_job: int = 0, on_progress: Progress | None = None
            ) -> Iterator[tuple[T, R]]:
    """Yield ``(task, result)`` as each Ray task finishes (see the module docstring)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'stdp_bench[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--backend ray: cannot reach a Ray cluster at "
                              f"{address or 'a new local instance'}: {exc}") from None
        started_here = True
    remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job,
                        max_retries=max_retries, retry_exceptions=False)(_ray_job)
    refs = {remote.remote(kind.run, task): task for task in tasks}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker lost beyond its retries
                    result = kind.lost(task, f"Ray task failed after {max_retries} "
                                             f"retries: {type(exc).__name__}: {exc}")
                if on_progress is not None:
                    on_progress(kind.size(task))
                yield task, result
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _ray_job(run: Callable[[Any, Progress | None], Any], task: Any) -> Any:
    # Inside a Ray worker: the task's CPU share decides its thread count.
    import ray

    _set_threads(int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    return run(task, None)


def check_backend(backend: str, address: str | None) -> None:
    """Reject a backend name or option combination before anything is written."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if backend == "local" and address:
        raise ConfigError("--address is for --backend ray")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("--backend ray needs Ray: pip install 'stdp_bench[ray]'")


def run_tasks(tasks: list[T], kind: TaskKind[T, R], *, backend: str = "local",
              workers: int = 1, address: str | None = None, gpus_per_job: int = 0,
              on_progress: Progress | None = None) -> Iterator[tuple[T, R]]:
    """Dispatch to a backend by name; yields ``(task, result)`` as each task finishes."""
    check_backend(backend, address)
    if backend == "local":
        return run_local(tasks, kind, workers=workers, on_progress=on_progress)
    return run_ray(tasks, kind, address=address, num_cpus=workers if workers > 1 else None,
                   gpus_per_job=gpus_per_job, on_progress=on_progress)


def run_jobs(jobs: list[Job], ctx: JobContext, *, backend: str = "local", workers: int = 1,
             address: str | None = None, on_progress: Progress | None = None
             ) -> Iterator[list[CellRecord]]:
    """Grid jobs on a backend; yields each job's records as it finishes."""
    gpus = 1 if ctx.execution.device == "cuda" else 0
    for _, records in run_tasks(jobs, grid_jobs(ctx), backend=backend, workers=workers,
                                address=address, gpus_per_job=gpus,
                                on_progress=on_progress):
        yield records
