"""The tuner's Optuna side: one study per cell, asked in rounds, pruned at the rungs.

Studies live in ``OUT/study.db``; each stores the ``[search]`` it was asked with, so a
rerun refuses a folder searched differently, and its current round, so a killed run
finishes that round before asking anything else (:func:`ask_round`). Samplers are seeded
per ask from the search seed, the study and the trial number. What runs the trials is
:mod:`stdp_bench.tuner`'s.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, Trial, TrialState

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.grid import Cell
from stdp_bench.results import STUDY_DB
from stdp_bench.search_space import Choices, Range, SearchSpec

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
class LiveTrial:
    """A trial of the current round, with its network state between rungs."""

    study: optuna.Study
    trial: Trial
    config: CellConfig
    seconds: float = 0.0
    reported: set[int] = field(default_factory=set)  # rungs already in the study
    # The engine state it reached (its replica's slice of the task's state).
    state: dict[str, np.ndarray] | None = None
    result: dict[str, Any] = field(default_factory=dict)


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


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=_ASKED[1:])


def ask_round(studies: dict[str, tuple[optuna.Study, Cell]], spec: SearchSpec
              ) -> list[LiveTrial]:
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
            start, size = len(asked), min(spec.batch, spec.trials - len(finished_trials(study)))
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
            live.append(LiveTrial(study, trial, spec.trial_config(cell.config,
                                                              suggest(trial, spec)),
                              reported=set(frozen.intermediate_values)))
        for number in range(start + len(in_round), start + size):
            study.sampler = _sampler(spec, name, number)
            trial = study.ask()
            live.append(LiveTrial(study, trial, spec.trial_config(cell.config,
                                                              suggest(trial, spec))))
    return live


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
