"""``stdp-bench tune``: every cell of a grid tuned on a validation split, then run on test.

One Optuna study per cell (the factors other than ``seed``), stored in
``OUT/study.db`` (SQLite; ``optuna-dashboard sqlite:///OUT/study.db`` opens it). The
search runs in rounds: each round asks ``batch`` trials of every study, and all trials
of the round that share tensor shapes train together as replicas in one kernel job
(:mod:`stdp_bench.trial_jobs`), rung by rung. After each rung every trial reports its
validation accuracy; a trial below the median of all values its study has seen at that
rung stops there (successive halving by 2, :class:`stdp_bench.studies.RungMedianPruner`),
the others continue from where they are. Trial 0 of every study is the grid's own
settings and is never pruned, so the tuned point cannot score below the default on
validation.

Then the final runs: every cell at its default settings and at its best trial's
settings, with every seed of the ``seed`` factor, through the usual runner on the
test split (cell records with a ``stage`` column, tidy table, resume). Search and final
runs are one step of :func:`stdp_bench.orchestration.run_in_folder`, under the folder's
lock; ``--replicas`` caps the trials of a search task and the cells of a final job.

Resume: a killed search leaves its in-flight trials RUNNING in the study; a rerun
trains them again from scratch (the same trial numbers and parameters, so none is
counted twice and none is lost), then goes on. Samplers are seeded per ask from the
search seed, the study and the trial number, so the same command in two fresh folders
asks the same trials, and a resumed search asks what an uninterrupted one would have.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from stdp_bench.backends import Progress, TaskKind
from stdp_bench.config import ConfigError
from stdp_bench.execution import Execution
from stdp_bench.grid import SHAPE_KEYS, Cell, expand
from stdp_bench.grid_file import GridSpec
from stdp_bench.levels import registry
from stdp_bench.orchestration import Dispatch, Session, run_in_folder
from stdp_bench.progress import ProgressBar, progress_bar
from stdp_bench.results import STAGES, STUDY_DB, TRIALS_STEM, write_json_atomic, write_table
from stdp_bench.runner import execute_jobs, pending_jobs
from stdp_bench.search_space import SearchSpec, parse_search
from stdp_bench.studies import (LiveTrial, ask_round, best_trials, finished_trials,
                                open_studies, trials_table)
from stdp_bench.records import Status
from stdp_bench.trainers import trainer_of
from stdp_bench.trial_jobs import RungResult, RungTask, lost_rung, run_rung

BEST_NAME = "best.json"


@dataclass(frozen=True)
class TuneOutcome:
    """What a tune run did: the search's counts and rate, and the final table."""

    metric: str  # the readout the search maximised
    trials: int
    pruned: int
    failed: int
    search_seconds: float
    network_samples: int
    study_states: dict[str, int]  # trials in study.db by state, earlier runs included
    table: pd.DataFrame

    @property
    def samples_per_second(self) -> float:
        """Network-samples simulated per second during this run's search."""
        return self.network_samples / self.search_seconds if self.search_seconds else 0.0


def tuning_cells(grid: GridSpec) -> list[Cell]:
    """The cells that get a study: the grid's cells with the ``seed`` factor left out.

    An ``exclude`` entry that names seeds drops a combination only when it drops every
    seed of it.
    """
    factors = {k: v for k, v in grid.factors.items() if k != "seed"}
    seeds = set(grid.factors.get("seed", ()))
    exclude = tuple({k: v for k, v in entry.items() if k != "seed"} for entry in grid.exclude
                    if seeds <= set(entry.get("seed", seeds)))
    return expand(replace(grid, factors=factors, exclude=exclude))


def final_seeds(grid: GridSpec) -> tuple[int, ...]:
    """Seeds of the final runs: the ``seed`` factor's levels, else the grid's seed."""
    return tuple(grid.factors.get("seed", (grid.settings.get("seed", 0),)))


def limit_spec(spec: SearchSpec, limit_train: int | None) -> SearchSpec:
    """Rungs capped at ``limit_train`` (equal rungs merge)."""
    if limit_train is None:
        return spec
    if limit_train < 1:
        raise ConfigError(f"--limit-train {limit_train} must be at least 1")
    return replace(spec, rungs=tuple(sorted({min(r, limit_train) for r in spec.rungs})))


def _tasks(live: list[LiveTrial], lo: int, hi: int, spec: SearchSpec, session: Session,
           execution: Execution) -> list[RungTask]:
    """Trials grouped by the settings that fix shapes, at most ``max_replicas`` a task
    and split so that every worker gets a share of each group."""
    max_replicas, workers = session.dispatch.max_replicas, session.dispatch.workers
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(live):
        # Every shape setting, the dataset and its preprocessing included: a task reads
        # one dataset for all its trials.
        extra = trainer_of(t.config).group_key(t.config, execution.engine)
        key = ((i,) if extra is None  # one trial per engine
               else tuple(getattr(t.config, k) for k in SHAPE_KEYS) + extra)
        groups.setdefault(key, []).append(i)
    tasks = []
    for members in groups.values():
        size = max(1, min(max_replicas, -(-len(members) // workers)))
        for k in range(0, len(members), size):
            part = members[k:k + size]
            states = [live[i].state for i in part]
            tasks.append(RungTask(
                trial_ids=tuple(part), cfgs=tuple(live[i].config for i in part), lo=lo,
                hi=hi, metric=spec.metric, data_dir=session.data_dir, execution=execution,
                state=None if states[0] is None else
                {k: np.stack([st[k] for st in states]) for k in states[0]},
                plugins=session.grid.plugins))
    return tasks


def _run_rung(task: RungTask, on_progress: Progress | None) -> RungResult:
    # Wherever the task runs, the grid's levels are registered before its cells are built.
    registry.load_plugins(task.plugins)
    return run_rung(task, on_progress)


TRIAL_TASKS: TaskKind[RungTask, RungResult] = TaskKind(run=_run_rung, size=RungTask.samples,
                                                       lost=lost_rung)


def run_round(live: list[LiveTrial], spec: SearchSpec, session: Session, bar: ProgressBar,
              counts: dict[str, int], execution: Execution) -> int:
    """Train the round's trials rung by rung, report, prune, tell; return samples run."""
    samples = 0
    for i, rung in enumerate(spec.rungs):
        lo = spec.rungs[i - 1] if i else 0
        tasks = _tasks(live, lo, rung, spec, session, execution)
        # closing: an interrupt stops the backend's workers here, not when the generator
        # is collected (which a traceback holding this frame would delay).
        with closing(session.backend.run(tasks, TRIAL_TASKS,
                                         on_progress=bar.update)) as finished:
            for task, res in finished:
                samples += task.samples()
                share = res.seconds / len(task.cfgs)
                for r, idx in enumerate(task.trial_ids):
                    t = live[idx]
                    t.seconds += share
                    t.result = {"status": res.status[r], "value": float(res.accuracy[r]),
                                "exc_spikes_per_sample": float(res.exc_spikes_per_sample[r]),
                                "error": res.error}
                    if res.state is not None:
                        t.state = {k: v[r] for k, v in res.state.items()}
        # Report every trial before any decides, so the medians are the round's own.
        for t in live:
            _record_attrs(t, rung)
            if t.result["status"] is not Status.ERROR and rung not in t.reported:
                t.trial.report(t.result["value"], rung)
                t.reported.add(rung)
        survivors = []
        for t in live:
            if t.result["status"] is Status.ERROR:
                t.study.tell(t.trial, state=TrialState.FAIL)
                counts["failed"] += 1
            elif rung == spec.rungs[-1]:
                t.study.tell(t.trial, t.result["value"])
            elif t.trial.should_prune():
                t.study.tell(t.trial, state=TrialState.PRUNED)
                counts["pruned"] += 1
            else:
                survivors.append(t)
                continue
            counts["done"] += 1
        bar.set_postfix_str(f"{counts['done']} done, {counts['pruned']} pruned, "
                            f"{counts['failed']} failed")
        live = survivors
    return samples


def _record_attrs(t: LiveTrial, rung: int) -> None:
    t.trial.set_user_attr("rung", rung)
    t.trial.set_user_attr("seconds", round(t.seconds, 3))
    t.trial.set_user_attr("status", t.result["status"].value)
    t.trial.set_user_attr("exc_spikes_per_sample", t.result["exc_spikes_per_sample"])
    if t.result["error"]:
        t.trial.set_user_attr("error", t.result["error"])


def _expected_samples(spec: SearchSpec, n_trials: int) -> int:
    """Network-samples of ``n_trials`` if half of the trials stop at every rung."""
    total, survive, lo = 0.0, 1.0, 0
    for rung in spec.rungs:
        total += survive * (rung - lo + spec.n_label + spec.n_val)
        survive *= 0.5
        lo = rung
    return int(n_trials * total)


def final_cells(grid: GridSpec, studies: dict[str, tuple[optuna.Study, Cell]],
                best: dict[str, tuple[FrozenTrial, FrozenTrial]],
                limit_train: int | None) -> list[Cell]:
    """Every cell at its default and its best trial's settings, for every final seed
    that the grid's ``exclude`` keeps."""
    cells = []
    for name, (_, cell) in studies.items():
        tuned_params = best[name][0].params
        for seed in final_seeds(grid):
            levels = (*cell.levels, ("seed", seed))
            if "seed" in grid.factors and grid.excludes(dict(levels)):
                continue
            base = cell.config.with_settings(seed=seed)
            if limit_train is not None:
                base = base.with_settings(n_train=min(base.n_train, limit_train))
            default, tuned = STAGES
            cells.append(Cell(base, levels, stage=default))
            cells.append(Cell(base.with_settings(**tuned_params), levels, stage=tuned))
    return cells


@dataclass
class _Tuning:
    """tune's work in its locked results folder: open the studies (``admit``, before
    ``grid.toml`` is written), search, then run the final cells (``execute``)."""

    grid: GridSpec
    spec: SearchSpec
    cells: list[Cell]
    limit_train: int | None
    execution: Execution
    studies: dict[str, tuple[optuna.Study, Cell]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "pruned": 0,
                                                             "failed": 0})
    samples: int = 0
    search_seconds: float = 0.0
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)

    def admit(self, out_dir: Path) -> None:
        """Open the studies; refuses a folder searched with another ``[search]``."""
        storage = optuna.storages.RDBStorage(f"sqlite:///{out_dir / STUDY_DB}")
        self.studies = open_studies(storage, self.cells, self.spec, self.grid.name)

    def execute(self, session: Session) -> None:
        """The search, the best trials, then the final default and tuned cells."""
        self.search(session)
        best = best_trials(self.studies)
        write_json_atomic(session.out_dir / BEST_NAME, {
            name: {"levels": dict(self.studies[name][1].levels), "trial": b.number,
                   "value": b.value, "default_value": d.value, "params": b.params}
            for name, (b, d) in best.items()})
        finals = final_cells(self.grid, self.studies, best, self.limit_train)
        ctx = session.job_context((*self.grid.factors, "stage"), self.execution)
        # As the search's tasks: at most --replicas cells a job, and a job for every worker.
        d = session.dispatch
        size = max(1, min(d.max_replicas, -(-len(finals) // d.workers)))
        execute_jobs(pending_jobs(finals, session.out_dir, size, self.execution.engine),
                     len(finals), session, ctx)

    def search(self, session: Session) -> None:
        """Rounds until every study has its trials; the trials table after each."""
        spec, out_dir = self.spec, session.out_dir
        todo = sum(max(0, spec.trials - len(finished_trials(s))) for s, _ in self.studies.values())
        bar = progress_bar(_expected_samples(spec, todo), f"{self.grid.name}: search, "
                           f"{todo} trials", enabled=session.dispatch.progress)
        t0 = time.perf_counter()
        try:
            while live := ask_round(self.studies, spec):
                self.samples += run_round(live, spec, session, bar, self.counts,
                                          self.execution)
                write_table(trials_table(self.studies), out_dir, TRIALS_STEM)
        finally:
            bar.close()
            self.trials = trials_table(self.studies)
            write_table(self.trials, out_dir, TRIALS_STEM)
        self.search_seconds = time.perf_counter() - t0


def tune_grid(grid: GridSpec, out_dir: Path, *, data_dir: str | Path | None = None,
              limit_train: int | None = None, trials: int | None = None,
              backend: str = "local", workers: int = 1, address: str | None = None,
              max_replicas: int = 64, progress: bool = True,
              execution: Execution = Execution()) -> TuneOutcome:
    """Search every cell, then run the final default and tuned cells on the test split.

    ``max_replicas`` caps the trials of a search task and the cells of a final job;
    ``execution`` picks the engine of both (``--engine`` / ``--device``). The
    folder's lock, preflight and table are
    :func:`stdp_bench.orchestration.run_in_folder`'s.

    >>> from stdp_bench.grid_file import parse_grid
    >>> import tempfile
    >>> grid = parse_grid({"name": "doc", "settings": {"dataset": "digits",
    ...     "n_neurons": 10, "time": 40, "n_train": 60, "n_label": 200, "n_test": 100},
    ...     "factors": {"neuron": ["lif"], "seed": [0]},
    ...     "search": {"trials": 3, "batch": 3, "rungs": [20, 40], "n_label": 100,
    ...                "n_val": 100, "space": {"inh": {"low": 20.0, "high": 500.0}}}})
    >>> out = tune_grid(grid, Path(tempfile.mkdtemp()) / "doc", progress=False)
    >>> out.trials, sorted(out.table["stage"].unique())
    (3, ['default', 'tuned'])
    """
    spec = parse_search(grid)
    if trials is not None:
        if trials < 1:
            raise ConfigError(f"--trials {trials} must be at least 1")
        spec = replace(spec, trials=trials)
    spec = limit_spec(spec, limit_train)
    cells = tuning_cells(grid)
    # The search's trial cells (validation protocol) and the final cells (test split).
    check = ([Cell(spec.trial_config(c.config, {}), c.levels) for c in cells]
             + [Cell(c.config.with_settings(seed=s), c.levels) for c in cells
                for s in final_seeds(grid)])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning = _Tuning(grid, spec, cells, limit_train, execution)
    table = run_in_folder(grid, Path(out_dir), check_cells=check, data_dir=data_dir,
                          dispatch=Dispatch(backend=backend, workers=workers,
                                            address=address, max_replicas=max_replicas,
                                            progress=progress),
                          execute=tuning.execute, admit=tuning.admit)
    counts = tuning.counts
    return TuneOutcome(metric=spec.metric, trials=counts["done"], pruned=counts["pruned"],
                       failed=counts["failed"], search_seconds=tuning.search_seconds,
                       network_samples=tuning.samples,
                       study_states=tuning.trials["state"].value_counts().to_dict(),
                       table=table)
