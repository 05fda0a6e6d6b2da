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
  records. Workers send their progress (a chunk of samples at a time) back through a
  queue; a run stopped early (Ctrl-C, SIGTERM) terminates them.
* ``ray`` submits every job as a Ray task (``num_cpus`` per task, a GPU when the
  execution device is cuda). Ray retries a task whose worker died (``max_retries``); a
  task that still fails gives its cells ``error`` records. ``address`` joins a running
  cluster (``auto`` or ``HOST:PORT``), after checking within seconds that its port
  answers; without one a new local Ray instance is started. Progress counts whole
  tasks; a run stopped early cancels its tasks. Every node needs stdp_bench installed
  and the data root at the same path.

What a worker needs besides its task travels inside it, never in environment variables:
a job's :class:`JobContext` carries the commit the driver pinned and the grid's plugin
modules, which the worker imports before it runs the job.

Grid jobs and tuning rungs are both tasks of a :class:`TaskKind`, which says how to run
one, how much progress it counts for, and what stands for it when it is lost. A command
runs its batches of tasks (one for ``run``; one per rung, then the final runs, for
``tune``) on one :class:`Backend`, which keeps what is slow to start (local worker
processes, the Ray connection and its workers) from one batch to the next.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import closing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from multiprocessing.queues import SimpleQueue
from typing import Any, Callable, Generic, TypeVar

from stdp_bench.config import ConfigError
from stdp_bench.grid import Job
from stdp_bench.execution import Execution
from stdp_bench.exiting import freeze_at_exit
from stdp_bench.levels import registry
from stdp_bench.ray_tasks import _import_ray, _init_ray, run_ray
from stdp_bench.records import CellRecord
from stdp_bench.threads import set_threads
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


# In a worker process: where its job's progress goes (set by _worker_init).
_progress_queue: SimpleQueue | None = None


def _worker_init(threads: int, progress_queue: SimpleQueue | None = None) -> None:
    # N workers share the machine's cores: each gets its share of the threads.
    global _progress_queue
    set_threads(threads)
    # The pool's shutdown waits for its workers to exit: without a last collection.
    freeze_at_exit()
    _progress_queue = progress_queue


def _run_reporting(run: Callable[[Any, Progress | None], Any], task: Any, token: int) -> Any:
    # In a worker process: the task's progress goes to the driver, tagged with the
    # task's token, as the engine counts it (a chunk of samples at a time).
    queue = _progress_queue
    return run(task, None if queue is None else (lambda n: queue.put((token, n))))


class _Counted:
    """The driver's side of workers' progress: forwards each task's counts to
    ``on_progress``, never more than the task's size in all, so a task run again after
    its worker died counts once."""

    def __init__(self, on_progress: Progress, size: Callable[[Any], int]) -> None:
        self.on_progress, self.size = on_progress, size
        self.counted: dict[int, int] = {}

    def add(self, token: int, task: Any, n: int) -> None:
        """Count ``n`` more samples of the task ``token``, up to its size."""
        done = self.counted.get(token, 0)
        n = max(0, min(n, self.size(task) - done))
        if n:
            self.counted[token] = done + n
            self.on_progress(n)

    def finish(self, token: int, task: Any) -> None:
        """The task ended: count what its worker did not report."""
        self.add(token, task, self.size(task))


def _stop_workers(pool: ProcessPoolExecutor, grace: float = 10.0) -> None:
    """Terminate this pool's worker processes and wait for them.

    ``shutdown`` only cancels jobs that have not started; the running ones would go on
    to their end. Python 3.14 has ``terminate_workers``; before it the pool's own
    process handles (``_processes``) are the way to reach its workers, and only them.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(grace)
        if proc.is_alive():  # ignored SIGTERM past the grace: no job is worth a hang
            proc.kill()
            proc.join()


class WorkerPool:
    """``workers`` spawned worker processes kept from one :func:`run_local` batch to the
    next (tune's rungs, then its final runs): each worker imports torch and stdp_bench
    and loads its kernels once per command, not once per rung.

    A pool that lost a worker, or whose batch was stopped early, is discarded (its
    workers terminated) and the next batch starts a new one. Workers send progress
    through the pool's queue tagged with their batch, so a count a finished batch left
    in the queue is never credited to the next.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._queue: SimpleQueue | None = None
        self.batches = 0  # batches begun, the tag of the current one's progress

    def executor(self) -> tuple[ProcessPoolExecutor, SimpleQueue, bool]:
        """The pool's executor and progress queue (started if there is none), and
        whether they were started by this call."""
        if self._executor is not None and self._queue is not None:
            return self._executor, self._queue, False
        ctx = get_context("spawn")
        # N workers share the machine's cores: each gets its share of the threads.
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        # A queue per executor: a worker killed while writing to it may leave its lock
        # held, and the executor it belonged to is broken and replaced anyway.
        self._queue = ctx.SimpleQueue()
        self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                             initializer=_worker_init,
                                             initargs=(threads, self._queue))
        return self._executor, self._queue, True

    def discard(self, terminate: bool = False) -> None:
        """Shut the workers down (``terminate``: at once, mid-job); the next batch starts
        new ones."""
        executor, queue = self._executor, self._queue
        self._executor = self._queue = None
        if executor is not None:
            if terminate:
                _stop_workers(executor)
            executor.shutdown(wait=True, cancel_futures=True)
        if queue is not None:
            queue.close()

    close = discard


def run_local(tasks: list[T], kind: TaskKind[T, R], *, workers: int = 1,
              max_retries: int = 2, on_progress: Progress | None = None,
              poll_seconds: float = 0.2, pool: WorkerPool | None = None
              ) -> Iterator[tuple[T, R]]:
    """Yield ``(task, result)`` as each task finishes, running ``workers`` at a time.

    With ``workers > 1`` the workers send their progress to this process as they go,
    which forwards it to ``on_progress`` every ``poll_seconds`` at most. When the caller
    stops early (Ctrl-C, SIGTERM, an error, or closing this generator), the running
    workers are terminated before this returns. ``pool`` keeps the worker processes for
    the caller's next batch (its size is the worker count); without one they are started
    for this batch and shut down at its end.
    """
    if pool is not None:
        workers = pool.workers
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    if workers == 1:
        for task in tasks:
            yield task, kind.run(task, on_progress)
        return
    own = pool is None
    pool = WorkerPool(workers) if pool is None else pool
    pool.batches += 1
    batch = pool.batches
    tokens = {id(task): i for i, task in enumerate(tasks)}
    attempts = {id(task): 0 for task in tasks}

    def given_up(task: T) -> R | None:
        """Count a lost run of ``task``; past ``max_retries``, the result standing for it."""
        attempts[id(task)] += 1
        if attempts[id(task)] <= max_retries:
            return None
        return kind.lost(task, f"worker process died {attempts[id(task)]} times running "
                               "this job")

    counted = None if on_progress is None else _Counted(on_progress, kind.size)
    pending = list(tasks)
    try:
        while pending:
            executor, queue, started = pool.executor()
            futures: dict[Future, Any] = {}
            broken = False
            try:
                try:  # (inside the try: submitting starts the workers)
                    for task in pending:
                        futures[executor.submit(_run_reporting, kind.run, task,
                                                (batch, tokens[id(task)]))] = task
                except (BrokenProcessPool, OSError):
                    # The pool broke while the batch was being handed to it: a worker of
                    # the kept pool died idle between batches (not `started`: nothing of
                    # this batch ran), or a worker of a new pool died while the rest was
                    # still being submitted (a pool starts its workers as tasks arrive,
                    # so on a busy machine a worker can run, and die, by then; starting
                    # the next worker then fails with BrokenProcessPool, or with OSError
                    # "handle is closed" when the pool has already closed its queues).
                    # The tasks handed over are lost with the pool; a new pool takes them
                    # and the rest, and a task that keeps killing its worker is given up.
                    # Its workers are stopped, not left to shutdown: one started after the
                    # break is not among those the pool's own clean-up ends, and joining
                    # it waited forever (seen in a test run).
                    handed = list(futures.values()) if started else []
                    futures.clear()
                    pool.discard(terminate=True)
                    for task in handed:
                        lost = given_up(task)
                        if lost is not None:
                            pending.remove(task)
                            yield task, lost
                    continue
                pending = []
                while futures:
                    done, _ = wait(futures, timeout=poll_seconds,
                                   return_when=FIRST_COMPLETED)
                    _drain(queue, counted, tasks, batch)
                    for fut in done:
                        task = futures.pop(fut)
                        try:
                            result = fut.result()
                        except BrokenProcessPool:
                            # A worker died; every task still in this pool is lost with it.
                            broken = True
                            lost = given_up(task)
                            if lost is not None:
                                yield task, lost
                            else:
                                pending.append(task)
                            continue
                        if counted is not None:
                            counted.finish(tokens[id(task)], task)
                        yield task, result
            finally:
                if futures:  # stopped early: the running jobs' results would go nowhere
                    pool.discard(terminate=True)
                elif broken:
                    pool.discard()
    finally:
        if own:
            pool.close()


def _drain(queue: SimpleQueue, counted: _Counted | None, tasks: list[Any],
           batch: int) -> None:
    """Forward the progress this batch's workers have sent so far (and drop what an
    earlier batch of the pool left)."""
    while not queue.empty():
        (sent_in, token), n = queue.get()
        if counted is not None and sent_in == batch:
            counted.add(token, tasks[token], n)


def check_backend(backend: str, address: str | None) -> None:
    """Reject a backend name or option combination before anything is written."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if backend == "local" and address:
        raise ConfigError("--address is for --backend ray")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("--backend ray needs Ray: pip install 'stdp_bench[ray]'")


class Backend:
    """One run's backend, held for all of its batches of tasks (a grid's jobs; tune's
    rungs, round after round, then its final runs).

    With ``local`` and ``workers > 1``, the worker processes (a :class:`WorkerPool`)
    stay from one batch to the next. With ``ray``, the first batch joins the cluster at
    ``address`` (or starts a local instance with ``workers`` CPUs) and the connection
    stays until :meth:`close`: Ray starts a driver's workers per connection, so
    connecting per batch would start and import them again for every rung. A batch
    stopped early still terminates its workers or cancels its tasks.
    """

    def __init__(self, name: str = "local", *, workers: int = 1,
                 address: str | None = None) -> None:
        check_backend(name, address)
        self.name, self.workers, self.address = name, workers, address
        self._pool = WorkerPool(workers) if name == "local" and workers > 1 else None
        self._owns_ray = False

    def run(self, tasks: list[T], kind: TaskKind[T, R], *, gpus_per_job: int = 0,
            on_progress: Progress | None = None) -> Iterator[tuple[T, R]]:
        """Yield ``(task, result)`` as each task of this batch finishes."""
        if self.name == "local":
            return run_local(tasks, kind, workers=self.workers, on_progress=on_progress,
                             pool=self._pool)
        # Before the generator starts: Ray is up (or refused) when this returns.
        self._owns_ray = _init_ray(self.address, self._ray_cpus()) or self._owns_ray
        return run_ray(tasks, kind, address=self.address, num_cpus=self._ray_cpus(),
                       gpus_per_job=gpus_per_job, on_progress=on_progress)

    def _ray_cpus(self) -> int | None:
        return self.workers if self.workers > 1 else None

    def close(self) -> None:
        """Shut down the worker processes, or the Ray connection (and the local
        instance) this backend started."""
        if self._pool is not None:
            self._pool.close()
        if self._owns_ray:
            self._owns_ray = False
            _import_ray().shutdown()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_jobs(jobs: list[Job], ctx: JobContext, backend: Backend, *,
             on_progress: Progress | None = None) -> Iterator[list[CellRecord]]:
    """Grid jobs on a backend; yields each job's records as it finishes."""
    gpus = 1 if ctx.execution.device == "cuda" else 0
    # closing: when this generator is closed early, the backend's stops its workers now.
    with closing(backend.run(jobs, grid_jobs(ctx), gpus_per_job=gpus,
                             on_progress=on_progress)) as finished:
        for _, records in finished:
            yield records
