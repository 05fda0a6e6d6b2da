"""``stdp-bench tune``: every cell of a grid tuned on a validation split, then run on test.

One Optuna study per cell (the factors other than ``seed``), stored in
``OUT/study.db`` (SQLite; ``optuna-dashboard sqlite:///OUT/study.db`` opens it). The
search runs in rounds: each round asks ``batch`` trials of every study, and all trials
of the round that share tensor shapes train together as replicas in one kernel job
(:mod:`stdp_bench.trial_jobs`), rung by rung. After each rung every trial reports its
validation accuracy; a trial below the median of all values its study has seen at that
rung stops there (successive halving by 2, :class:`RungMedianPruner`), the others
continue from where they are. Trial 0 of every study is the grid's own settings and is
never pruned, so the tuned point cannot score below the default on validation.

Then the final runs: every cell at its default settings and at its best trial's
settings, with every seed of the ``seed`` factor, through the usual runner on the
test split (cell records with a ``stage`` column, tidy table, resume).

Resume: a killed search leaves its in-flight trials RUNNING in the study; a rerun
trains them again from scratch (the same trial numbers and parameters, so none is
counted twice and none is lost), then goes on. Samplers are seeded per ask from the
search seed, the study and the trial number, so the same command in two fresh folders
asks the same trials, and a resumed search asks what an uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, Trial, TrialState
from tqdm import tqdm

from stdp_bench.backends import JobContext, TaskKind, check_backend, run_tasks
from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.grid import SHAPE_KEYS, Cell, expand
from stdp_bench.grid_file import GridSpec
from stdp_bench.results import (STAGES, STUDY_DB, TRIALS_STEM, rebuild_tables, write_json_atomic,
                                write_table)
from stdp_bench.runner import (execute_jobs, pending_jobs, preflight, prepare_out_dir,
                               remove_stale_temp_files, results_lock, write_grid_file)
from stdp_bench.search_space import Choices, Range, SearchSpec, parse_search
from stdp_bench.execution import Execution
from stdp_bench.records import Status
from stdp_bench.train import pin_commit
from stdp_bench.trainers import trainer_of
from stdp_bench.trial_jobs import RungResult, RungTask, lost_rung, run_rung

BEST_NAME = "best.json"
# The study attribute that lets a rerun refuse a folder searched differently.
_SPEC_ATTR = "search"
# [first trial number, size] of a study's current round, one attribute so that it is
# written at once: a rerun finishes an unfinished round before it asks anything else.
_ROUND = "round"
_ASKED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class RungMedianPruner(optuna.pruners.BasePruner):
    """Successive halving at the grid's rungs: a trial scored at a rung other than the
    last stops when its value is below the median of every value its study's trials
    reported at that rung. Trials marked ``default`` (trial 0) are never pruned.

    Optuna's ``SuccessiveHalvingPruner`` places its rungs at ``min_resource *
    reduction_factor ** k``; the rungs here are the grid's own list, hence this pruner.
    Its decision reads all values reported so far, and the tuner reports every trial of
    a round before it asks any to decide, so decisions do not depend on which trial
    finished first.
    """

    def __init__(self, rungs: tuple[int, ...]) -> None:
        self.rungs = tuple(rungs)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` stops at the rung it last reported."""
        step = trial.last_step
        if step is None or step not in self.rungs[:-1] or trial.user_attrs.get("default"):
            return False
        seen = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
                if step in t.intermediate_values]
        return trial.intermediate_values[step] < float(np.median(seen))


@dataclass
class _Live:
    """A trial of the current round, with its network state between rungs."""

    study: optuna.Study
    trial: Trial
    config: CellConfig
    seconds: float = 0.0
    reported: set[int] = field(default_factory=set)  # rungs already in the study
    # The engine state it reached (its replica's slice of the task's state).
    state: dict[str, np.ndarray] | None = None
    result: dict[str, Any] = field(default_factory=dict)


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


def study_name(cell: Cell) -> str:
    """A readable, unique name: ``encoder=poisson,neuron=lif`` (``cell`` if no factor)."""
    return ",".join(f"{k}={v}" for k, v in cell.levels) or "cell"


def default_params(spec: SearchSpec, cfg: CellConfig) -> dict[str, Any]:
    """The cell's own values of the searched settings (trial 0)."""
    return {key: getattr(cfg, key) for key in spec.space}


def suggest(trial: Trial, spec: SearchSpec) -> dict[str, Any]:
    """Ask the trial for a value of every searched setting."""
    params: dict[str, Any] = {}
    for key, dom in spec.space.items():
        if isinstance(dom, Choices):
            params[key] = trial.suggest_categorical(key, list(dom.values))
        elif isinstance(dom, Range) and isinstance(dom.low, int) and isinstance(dom.high, int):
            params[key] = trial.suggest_int(key, dom.low, dom.high, log=dom.log)
        else:
            params[key] = trial.suggest_float(key, float(dom.low), float(dom.high),
                                              log=dom.log)
    return params


def limit_spec(spec: SearchSpec, limit_train: int | None) -> SearchSpec:
    """Rungs capped at ``limit_train`` (equal rungs merge)."""
    if limit_train is None:
        return spec
    if limit_train < 1:
        raise ConfigError(f"--limit-train {limit_train} must be at least 1")
    return replace(spec, rungs=tuple(sorted({min(r, limit_train) for r in spec.rungs})))


def _fingerprint(spec: SearchSpec) -> str:
    # Everything that decides which trials are asked and how they are scored; the trial
    # count is left out so a rerun with --trials N can extend a finished search.
    d = asdict(replace(spec, trials=0))
    return json.dumps(d, sort_keys=True, default=str)


def _sampler(spec: SearchSpec, name: str, number: int) -> optuna.samplers.TPESampler:
    digest = hashlib.sha256(f"{spec.seed}:{name}:{number}".encode()).digest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "little"),
                                          n_startup_trials=spec.batch, multivariate=True,
                                          constant_liar=True)


def open_studies(storage: optuna.storages.BaseStorage, cells: list[Cell], spec: SearchSpec,
                 source: str) -> dict[str, tuple[optuna.Study, Cell]]:
    """Load or create the study of every cell; refuse studies searched differently."""
    studies = {}
    fingerprint = _fingerprint(spec)
    for cell in cells:
        name = study_name(cell)
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    load_if_exists=True, pruner=RungMedianPruner(spec.rungs))
        stored = study.user_attrs.get(_SPEC_ATTR)
        if stored is None:
            study.set_user_attr(_SPEC_ATTR, fingerprint)
        elif stored != fingerprint:
            raise ConfigError(f"{source}: study '{name}' in {STUDY_DB} was searched with "
                              f"another [search] ({stored}); use another --out")
        if not study.get_trials(deepcopy=False):
            # Trial 0 is the grid's own settings (a WAITING trial that the first ask takes).
            study.enqueue_trial(default_params(spec, cell.config),
                                user_attrs={"default": True})
        studies[name] = (study, cell)
    return studies


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=_ASKED[1:])


def ask_round(studies: dict[str, tuple[optuna.Study, Cell]], spec: SearchSpec
              ) -> list[_Live]:
    """This round's trials of every study.

    A study whose last round is unfinished (a killed run left some of its trials
    RUNNING, or asked fewer than the round's size) finishes that round: its RUNNING
    trials are taken up and the missing asks made, and nothing else, since asking a
    new trial beside them would give the sampler a history the uninterrupted run never
    had. Otherwise a new round of ``min(batch, trials left)`` asks begins; its first
    trial number and size are stored in the study before the first ask.
    """
    live = []
    for name, (study, cell) in studies.items():
        asked = study.get_trials(deepcopy=False, states=_ASKED)
        start, size = study.user_attrs.get(_ROUND, (len(asked), 0))
        in_round = [t for t in asked if t.number >= start]
        if len(in_round) == size and all(t.state != TrialState.RUNNING for t in in_round):
            start, size = len(asked), min(spec.batch, spec.trials - len(_finished(study)))
            if size <= 0:
                continue
            study.set_user_attr(_ROUND, [start, size])
            in_round = []
        for frozen in in_round:
            if frozen.state != TrialState.RUNNING:
                continue
            # A run killed between asking a trial and drawing its parameters left it
            # without some: drawing them again with the sampler seeded as at its ask
            # gives what the uninterrupted run drew (parameters drawn already are kept).
            study.sampler = _sampler(spec, name, frozen.number)
            # Optuna has no public handle to take up a RUNNING trial; its id is private.
            trial = Trial(study, frozen._trial_id)
            live.append(_Live(study, trial, spec.trial_config(cell.config,
                                                              suggest(trial, spec)),
                              reported=set(frozen.intermediate_values)))
        for number in range(start + len(in_round), start + size):
            study.sampler = _sampler(spec, name, number)
            trial = study.ask()
            live.append(_Live(study, trial, spec.trial_config(cell.config,
                                                              suggest(trial, spec))))
    return live


def _tasks(live: list[_Live], lo: int, hi: int, spec: SearchSpec, data_dir: str | None,
           max_replicas: int, workers: int, execution: Execution) -> list[RungTask]:
    """Trials grouped by the settings that fix shapes, at most ``max_replicas`` a task
    and split so that every worker gets a share of each group."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(live):
        # Every shape setting, the dataset and its preprocessing included: a task reads
        # one dataset for all its trials.
        key = (tuple(getattr(t.config, k) for k in SHAPE_KEYS)
               if trainer_of(t.config).groups else (i,))  # else: one trial per engine
        groups.setdefault(key, []).append(i)
    tasks = []
    for members in groups.values():
        size = max(1, min(max_replicas, -(-len(members) // workers)))
        for k in range(0, len(members), size):
            part = members[k:k + size]
            states = [live[i].state for i in part]
            tasks.append(RungTask(
                trial_ids=tuple(part), cfgs=tuple(live[i].config for i in part), lo=lo,
                hi=hi, metric=spec.metric, data_dir=data_dir, execution=execution,
                state=None if states[0] is None else
                {k: np.stack([st[k] for st in states]) for k in states[0]}))
    return tasks


TRIAL_TASKS: TaskKind[RungTask, RungResult] = TaskKind(run=run_rung, size=RungTask.samples,
                                                       lost=lost_rung)


def run_round(live: list[_Live], spec: SearchSpec, *, data_dir: str | None,
              backend: str, workers: int, address: str | None, max_replicas: int,
              bar: tqdm, counts: dict[str, int], execution: Execution) -> int:
    """Train the round's trials rung by rung, report, prune, tell; return samples run."""
    samples = 0
    for i, rung in enumerate(spec.rungs):
        lo = spec.rungs[i - 1] if i else 0
        tasks = _tasks(live, lo, rung, spec, data_dir, max_replicas, workers, execution)
        for task, res in run_tasks(tasks, TRIAL_TASKS, backend=backend, workers=workers,
                                   address=address, on_progress=bar.update):
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
        bar.set_postfix(done=counts["done"], pruned=counts["pruned"], failed=counts["failed"])
        live = survivors
    return samples


def _record_attrs(t: _Live, rung: int) -> None:
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


def trials_table(studies: dict[str, tuple[optuna.Study, Cell]]) -> pd.DataFrame:
    """One row per asked trial: the cell's factors, the trial's parameters, the rung it
    reached, its validation accuracy there, its state and its seconds."""
    rows = []
    for name, (study, cell) in studies.items():
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.WAITING:
                continue
            last = t.last_step
            rows.append({
                "study": name, **dict(cell.levels), "trial": t.number,
                "state": t.state.name, "default": bool(t.user_attrs.get("default", False)),
                "value": t.value if t.value is not None else
                (t.intermediate_values[last] if last is not None else np.nan),
                "rung": last, "seconds": t.user_attrs.get("seconds"),
                "status": t.user_attrs.get("status"),
                "exc_spikes_per_sample": t.user_attrs.get("exc_spikes_per_sample"),
                "error": t.user_attrs.get("error"), **t.params})
    return pd.DataFrame(rows)


def best_trials(studies: dict[str, tuple[optuna.Study, Cell]]
                ) -> dict[str, tuple[FrozenTrial, FrozenTrial]]:
    """Per study: (best completed trial, trial 0). Ties go to the lower trial number."""
    out = {}
    for name, (study, _) in studies.items():
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        default = [t for t in done if t.user_attrs.get("default")]
        if not done or not default:
            raise ConfigError(f"study '{name}' has no completed default trial; rerun to "
                              "finish its search")
        best = max(done, key=lambda t: (t.value, -t.number))
        out[name] = (best, default[0])
    return out


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


def tune_grid(grid: GridSpec, out_dir: Path, *, data_dir: str | Path | None = None,
              limit_train: int | None = None, trials: int | None = None,
              backend: str = "local", workers: int = 1, address: str | None = None,
              max_replicas: int = 64, progress: bool = True,
              execution: Execution = Execution()) -> TuneOutcome:
    """Search every cell, then run the final default and tuned cells on the test split.

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
    pin_commit()  # provenance: the checkout as the run starts (see runner.execute_jobs)
    out_dir = Path(out_dir)
    spec = parse_search(grid)
    if trials is not None:
        if trials < 1:
            raise ConfigError(f"--trials {trials} must be at least 1")
        spec = replace(spec, trials=trials)
    spec = limit_spec(spec, limit_train)
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    if max_replicas < 1:
        raise ConfigError(f"--replicas {max_replicas} must be at least 1")
    check_backend(backend, address)
    cells = tuning_cells(grid)
    preflight([Cell(spec.trial_config(c.config, {}), c.levels) for c in cells], data_dir)
    preflight([Cell(c.config.with_settings(seed=s), c.levels) for c in cells
               for s in final_seeds(grid)], data_dir)
    prepare_out_dir(grid, out_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = None if data_dir is None else str(data_dir)
    with results_lock(out_dir):
        remove_stale_temp_files(out_dir)
        storage = optuna.storages.RDBStorage(f"sqlite:///{out_dir / STUDY_DB}")
        studies = open_studies(storage, cells, spec, grid.name)
        write_grid_file(grid, out_dir)  # after the studies agreed with this [search]
        counts = {"done": 0, "pruned": 0, "failed": 0}
        todo = sum(max(0, spec.trials - len(_finished(s))) for s, _ in studies.values())
        bar = tqdm(total=_expected_samples(spec, todo), unit="sample", disable=not progress,
                   smoothing=0.05, desc=f"{grid.name}: search, {todo} trials")
        t0 = time.perf_counter()
        samples = 0
        try:
            while live := ask_round(studies, spec):
                samples += run_round(live, spec, data_dir=data, backend=backend,
                                     workers=workers, address=address,
                                     max_replicas=max_replicas, bar=bar, counts=counts,
                                     execution=execution)
                write_table(trials_table(studies), out_dir, TRIALS_STEM)
        finally:
            bar.close()
            trials_df = trials_table(studies)
            write_table(trials_df, out_dir, TRIALS_STEM)
        search_s = time.perf_counter() - t0

        best = best_trials(studies)
        write_json_atomic(out_dir / BEST_NAME, {
            name: {"levels": dict(studies[name][1].levels), "trial": b.number,
                   "value": b.value, "default_value": d.value, "params": b.params}
            for name, (b, d) in best.items()})
        finals = final_cells(grid, studies, best, limit_train)
        ctx = JobContext(grid=grid.name, factors=(*grid.factors, "stage"), data_dir=data,
                         execution=execution)
        try:
            execute_jobs(pending_jobs(finals, out_dir, 8), len(finals), out_dir, ctx,
                         progress=progress, backend=backend, workers=workers,
                         address=address)
        finally:
            table = rebuild_tables(out_dir)
    return TuneOutcome(metric=spec.metric, trials=counts["done"], pruned=counts["pruned"],
                       failed=counts["failed"], search_seconds=search_s,
                       network_samples=samples,
                       study_states=trials_df["state"].value_counts().to_dict(), table=table)
