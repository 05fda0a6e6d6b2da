"""stdp-bench tune: search-space validation, batched trials, pruning, resume, no test
leakage, and the CLI end to end (digits, tiny networks)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stdp_bench import trial_jobs
from stdp_bench.cli import app
from stdp_bench.config import ConfigError
from stdp_bench.data import load_dataset
from stdp_bench.grid import Cell, Job
from stdp_bench.grid_file import load_grid, parse_grid
from stdp_bench.search_space import parse_search
from stdp_bench.train import run_job
from stdp_bench.studies import RungMedianPruner
from stdp_bench.tuner import tune_grid

from conftest import private_ray_head, run_watched

log = logging.getLogger("stdp_bench.faults")

GRID = """
name = "tiny_tuned"
[settings]
dataset = "digits"
n_neurons = 10
time = 40
intensity_hz = 256.0
norm = 10.0
n_train = 80
n_label = 200
n_test = 150
[factors]
neuron = ["lif", "adaptive"]
seed = [0, 1]
[search]
trials = 6
batch = 3
rungs = [30, 60]
n_label = 150
n_val = 150
seed = 5
[search.space]
inh = {low = 20.0, high = 500.0, log = true}
theta_plus = {low = 0.005, high = 0.5, log = true}
time = {choices = [30, 40]}
"""


def _grid(tmp_path: Path, text: str = GRID) -> Path:
    path = tmp_path / "tiny_tuned.toml"
    path.write_text(text)
    return path


def _search(extra: dict | None = None, space: dict | None = None,
            factors: dict | None = None) -> dict:
    search = {"trials": 4, "rungs": [20, 40],
              "space": space if space is not None else {"inh": {"low": 20.0, "high": 500.0}}}
    search.update(extra or {})
    return {"name": "g", "settings": {"dataset": "digits"},
            "factors": factors if factors is not None else {"neuron": ["lif"]},
            "search": search}


@pytest.mark.parametrize("data, message", [
    (_search({"trails": 3}), "g [search]: unknown key 'trails'; allowed: trials, metric, "
                             "rungs, n_label, n_val, seed, batch, space"),
    (_search(space={"theta_pluss": {"low": 0.01, "high": 0.1}}),
     "g [search.space]: unknown setting 'theta_pluss'; did you mean 'theta_plus'?"),
    (_search(space={"neuron": {"choices": ["lif", "if"]}}),
     "g [search.space]: 'neuron' is both a factor and searched; search it or make it a "
     "factor, not both"),
    (_search(space={"theta_plus": {"low": -0.1, "high": 0.1}}),
     "g [search.space]: 'theta_plus' = -0.1 must be at least 0.0 (mV)"),
    (_search(space={"inh": {"low": 500.0, "high": 20.0}}),
     "g [search.space]: 'inh' has low = 500.0 >= high = 20.0; low must be below high"),
    (_search(space={"time": {"choices": []}}),
     "g [search.space]: 'time' choices = [] must be a non-empty list"),
    (_search(space={"inh": {"low": 0.0, "high": 20.0, "log": True}}),
     "g [search.space]: 'inh' has log = true and low = 0.0; a log scale needs low > 0"),
    (_search(space={"inh": {"low": 200.0, "high": 500.0}}),
     "g [search.space]: the grid's own 'inh' = 120.0 lies outside the searched range "
     "[200.0, 500.0]; trial 0 of every cell runs the grid's own settings"),
    (_search(space={"n_train": {"low": 10, "high": 20}}),
     "g [search.space]: 'n_train' cannot be searched (the tuner sets it, or it defines "
     "the cells)"),
    (_search({"metric": "accuracy"}),
     "g [search]: 'metric' = 'accuracy' is not a readout; allowed: all_activity, "
     "proportion_weighting, ngram, linear"),
    (_search({"rungs": [40, 20]}), "g [search]: 'rungs' = [40, 20] must increase strictly"),
    (_search({"trials": 0}), "g [search]: 'trials' = 0 must be an integer of at least 1"),
    (_search(space={"time": {"choices": [100, 100]}}),
     "g [search.space]: 'time' choices = [100, 100] repeats a level"),
    (_search(space={"encoder": {"choices": ["poisson", "spiky"]}}),
     "g [search.space]: 'encoder' = 'spiky' is not allowed; allowed: poisson, bernoulli, "
     "rank_order, direct"),
], ids=["unknown-key", "unknown-setting", "factor-and-searched", "outside-setting",
        "low-ge-high", "empty-choices", "log-nonpositive", "default-outside",
        "not-searchable", "metric", "rungs-order", "trials", "repeated-choice",
        "bad-choice"])
def test_search_space_validation_messages(data, message):
    with pytest.raises(ConfigError) as err:
        parse_search(parse_grid(data))
    assert str(err.value).startswith(message)


def test_search_refuses_engines_that_train_in_one_call():
    data = _search(factors={"architecture": ["mlp"]})
    data["settings"]["family"] = "ann"
    with pytest.raises(ConfigError, match=r"cell \{'architecture': 'mlp'\} \(architecture = "
                                          r"'mlp'\) trains in one call; allowed: dc2015, conv, "
                                          "local, stack$"):
        parse_search(parse_grid(data))


CONV_TUNED = """
name = "conv_tuned"
[settings]
dataset = "digits"
architecture = "conv"
conv_learning = "first_spike"
neuron = "adaptive"
kernel_size = 4
stride = 2
n_filters = 4
time = 20
n_train = 40
n_label = 60
n_test = 60
[factors]
seed = [0]
[search]
trials = 3
batch = 3
rungs = [20, 40]
n_label = 60
n_val = 60
[search.space]
conv_inh = {low = 1.0, high = 20.0}
"""


@pytest.mark.slow
@pytest.mark.parametrize("text, engine", [(CONV_TUNED, "auto"), (GRID, "torch")],
                         ids=["conv", "torch"])
def test_tune_runs_on_every_resumable_engine(tmp_path, text, engine):
    if engine == "torch":
        # Fewer trials and samples: the torch engine is the slow path on a CPU, and
        # what is checked here (trials complete, both final stages ok, on this engine)
        # does not depend on how many samples label and score them.
        text = text.replace("trials = 6", "trials = 2").replace("batch = 3", "batch = 2")
        for key, n in (("n_label = 200", "n_label = 50"), ("n_test = 150", "n_test = 50"),
                       ("n_label = 150", "n_label = 50"), ("n_val = 150", "n_val = 50")):
            assert key in text
            text = text.replace(key, n)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["tune", str(_grid(tmp_path, text)), "--out", str(out),
                                   "--engine", engine, "--quiet"])
    assert res.exit_code == 0, res.output
    trials = pd.read_parquet(out / "trials.parquet")
    assert (trials["state"] == "COMPLETE").any() and trials["value"].notna().any()
    table = pd.read_parquet(out / "results.parquet")
    assert sorted(table["stage"].unique()) == ["default", "tuned"]
    assert (table["status"] == "ok").all(), table["error"].unique()
    expected = {"auto": "kernel", "torch": "torch"}[engine]  # conv: the map kernel
    assert set(table["engine"] if "engine" in table else [expected]) == {expected}
    for path in (out / "cells").glob("*.json"):
        assert json.loads(path.read_text())["provenance"]["engine"] == expected


def test_grid_without_search_is_refused_by_tune(tmp_path):
    res = CliRunner().invoke(app, ["tune", "smoke", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "smoke: no [search] table; stdp-bench tune needs one" in res.output


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    """One uninterrupted tune of the tiny grid (in process)."""
    tmp = tmp_path_factory.mktemp("tuned")
    grid = load_grid(_grid(tmp))
    tune_grid(grid, tmp / "out", progress=False)
    return tmp / "out"


def _trials(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "trials.parquet")


def test_every_study_has_its_trials_and_trial0_is_the_default(tuned):
    trials = _trials(tuned)
    assert sorted(trials["study"].unique()) == ["neuron=adaptive", "neuron=lif"]
    for _, t in trials.groupby("study"):
        assert sorted(t["trial"]) == list(range(6))
        assert set(t["state"]) <= {"COMPLETE", "PRUNED"}
        first = t[t["trial"] == 0].iloc[0]
        assert first["default"] and first["state"] == "COMPLETE"
        assert (first["inh"], first["theta_plus"], first["time"]) == (120.0, 0.05, 40)
    best = json.loads((tuned / "best.json").read_text())
    for name, b in best.items():
        # The tuned point is never worse than the default on validation.
        assert b["value"] >= b["default_value"]


def test_pruned_trials_stop_at_the_first_rung_below_its_median(tuned):
    trials = _trials(tuned)
    pruned = trials[trials["state"] == "PRUNED"]
    assert len(pruned) > 0
    assert (pruned["rung"] == 30).all() and not pruned["default"].any()
    # Complete trials went on to the last rung; each pruned one was below the median
    # of the first-rung values its study had seen when it was decided (at most all).
    assert (trials[trials["state"] == "COMPLETE"]["rung"] == 60).all()
    import optuna

    for name, t in pruned.groupby("study"):
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tuned}/study.db")
        by_number = {tr.number: tr for tr in study.trials}
        for number in t["trial"]:
            tr = by_number[number]
            seen = [o.intermediate_values[30] for o in study.trials
                    if o.number < (number // 3 + 1) * 3 and 30 in o.intermediate_values]
            assert tr.intermediate_values[30] < np.median(seen)
            assert 60 not in tr.intermediate_values


def test_pruner_keeps_the_default_and_the_last_rung():
    import optuna

    study = optuna.create_study(direction="maximize", pruner=RungMedianPruner((10, 20)))
    values = [0.1, 0.5, 0.9]
    trials = []
    for i, v in enumerate(values):
        trial = study.ask()
        if i == 0:
            trial.set_user_attr("default", True)
        trial.report(v, 10)
        trials.append(trial)
    decisions = [t.should_prune() for t in trials]
    assert decisions == [False, False, False]  # 0.1 is the default; 0.5 is the median
    late = study.ask()
    late.report(0.2, 10)
    assert late.should_prune()
    late.report(0.0, 20)
    assert not late.should_prune()  # the last rung never prunes


def test_batched_trials_equal_trials_run_alone(tuned):
    """A completed trial, trained in a batch and continued across rungs, scores what its
    cell scores alone through the ordinary runner on the validation protocol."""
    grid = load_grid(tuned / "grid.toml")
    spec = parse_search(grid)
    trials = _trials(tuned)
    done = trials[trials["state"] == "COMPLETE"].head(4)
    for _, row in done.iterrows():
        neuron = row["study"].split("=")[1]
        base = _cell_config(grid, neuron)
        cfg = spec.trial_config(base, {"inh": float(row["inh"]),
                                       "theta_plus": float(row["theta_plus"]),
                                       "time": int(row["time"])})
        rec = run_job(Job((Cell(cfg, ()),)), grid="alone", factors=[])[0]
        assert rec.status == "ok", rec.error
        assert rec.readouts["proportion_weighting"].accuracy == pytest.approx(
            row["value"], abs=0), row["study"]


def _cell_config(grid, neuron):
    from stdp_bench.config import CellConfig

    return CellConfig(**grid.settings, neuron=neuron)


def test_rung_continuation_equals_one_pass():
    from stdp_bench.config import CellConfig

    cfgs = tuple(CellConfig(dataset="digits", n_neurons=10, time=40, split="validation",
                            n_train=60, n_label=100, n_test=100, neuron=n, inh=i)
                 for n, i in (("lif", 50.0), ("adaptive", 120.0), ("if", 300.0)))
    whole = trial_jobs.run_rung(trial_jobs.RungTask((0, 1, 2), cfgs, 0, 60,
                                                    "proportion_weighting"))
    first = trial_jobs.run_rung(trial_jobs.RungTask((0, 1, 2), cfgs, 0, 25,
                                                    "proportion_weighting"))
    rest = trial_jobs.run_rung(trial_jobs.RungTask((0, 1, 2), cfgs, 25, 60,
                                                   "proportion_weighting",
                                                   state=first.state))
    np.testing.assert_array_equal(whole.state["W"], rest.state["W"])
    np.testing.assert_array_equal(whole.accuracy, rest.accuracy)
    # Alone, each trial gets the same weights as in the batch.
    alone = trial_jobs.run_rung(trial_jobs.RungTask((1,), cfgs[1:2], 0, 60,
                                                    "proportion_weighting"))
    np.testing.assert_array_equal(alone.state["W"][0], whole.state["W"][1])


def test_same_command_in_two_folders_gives_the_same_trials(tuned, tmp_path):
    grid = load_grid(_grid(tmp_path))
    tune_grid(grid, tmp_path / "again", progress=False)
    cols = ["study", "trial", "state", "value", "rung", "inh", "theta_plus", "time"]
    pd.testing.assert_frame_equal(_trials(tuned)[cols], _trials(tmp_path / "again")[cols])
    assert json.loads((tuned / "best.json").read_text()) == \
        json.loads((tmp_path / "again" / "best.json").read_text())


def test_search_never_reads_the_test_split(tuned, tmp_path, monkeypatch):
    """Shuffled test labels and noise for test images: every chosen parameter is the same."""
    real = load_dataset("digits")
    rng = np.random.default_rng(0)
    poisoned = replace(real, x_test=rng.random(real.x_test.shape, dtype=np.float32),
                       y_test=rng.permutation(real.y_test))
    monkeypatch.setattr(trial_jobs, "cell_dataset", lambda cfg, data_dir=None: poisoned)
    grid = load_grid(_grid(tmp_path))
    tune_grid(grid, tmp_path / "poisoned", progress=False)
    ours = json.loads((tmp_path / "poisoned" / "best.json").read_text())
    assert ours == json.loads((tuned / "best.json").read_text())


def test_final_runs_have_both_stages_and_default_cells_equal_run(tuned, tmp_path):
    table = pd.read_parquet(tuned / "results.parquet")
    assert sorted(table["stage"].unique()) == ["default", "tuned"]
    # 2 cells x 2 seeds x 2 stages, 4 readouts each.
    assert len(table) == 2 * 2 * 2 * 4
    res = CliRunner().invoke(app, ["run", str(tuned / "grid.toml"), "--out",
                                   str(tmp_path / "plain"), "--quiet"])
    assert res.exit_code == 0, res.output
    plain = pd.read_parquet(tmp_path / "plain" / "results.parquet")
    default = table[table["stage"] == "default"]
    key = ["cell_id", "readout"]
    a = default.sort_values(key)[key + ["accuracy"]].reset_index(drop=True)
    b = plain.sort_values(key)[key + ["accuracy"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_killed_tune_resumes_without_duplicates_or_loss(tuned, tmp_path):
    grid_path = _grid(tmp_path)
    out = tmp_path / "killed"
    db = out / "study.db"
    proc = subprocess.Popen([sys.executable, "-m", "stdp_bench", "tune", str(grid_path),
                             "--out", str(out), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    end = time.time() + 300
    finished = 0
    while time.time() < end and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    finished = con.execute("select count(*) from trials where state in "
                                           "('COMPLETE', 'PRUNED')").fetchone()[0]
            except sqlite3.Error:
                finished = 0
            if finished >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    os.kill(proc.pid, signal.SIGKILL)  # the process this test started, nothing else
    proc.wait()
    with sqlite3.connect(db) as con:
        states = dict(con.execute("select state, count(*) from trials group by state"))
    assert 3 <= states.get("COMPLETE", 0) + states.get("PRUNED", 0) < 12
    res = CliRunner().invoke(app, ["tune", str(grid_path), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    with sqlite3.connect(db) as con:
        rows = con.execute("select s.study_name, t.number, t.state from trials t join "
                           "studies s using (study_id)").fetchall()
    assert len(rows) == 12 and len(set((s, n) for s, n, _ in rows)) == 12
    assert {state for _, _, state in rows} <= {"COMPLETE", "PRUNED"}
    trials = _trials(out)
    assert len(trials) == 12 and not trials.duplicated(["study", "trial"]).any()
    cols = ["study", "trial", "state", "value", "rung", "inh", "theta_plus", "time"]
    pd.testing.assert_frame_equal(trials[cols], _trials(tuned)[cols])
    log.warning("tune fault test: killed with %s, resumed to 12 trials identical to an "
                "uninterrupted run", states)


def test_cli_tune_show_plot(tuned, tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["tune", str(_grid(tmp_path)), "--out", str(out),
                                   "--quiet", "--trials", "3"])
    assert res.exit_code == 0, res.output
    assert "search: 6 trials finished in this run" in res.output
    assert "tuned_minus_default" in res.output
    shown = CliRunner().invoke(app, ["show", str(out), "--where",
                                     "readout=proportion_weighting"])
    assert shown.exit_code == 0, shown.output
    header = shown.output.splitlines()[0].split()
    assert header[:4] == ["neuron", "readout", "default", "default_ci95"]
    plotted = CliRunner().invoke(app, ["plot", str(out), "--x", "neuron", "--y", "grid",
                                       "--fields", "none"])
    assert plotted.exit_code == 0, plotted.output
    names = {Path(p).name for p in plotted.output.split()}
    assert {"heatmap_stages_proportion_weighting.png", "optimisation_history.png",
            "param_importances.png"} <= names
    # A rerun with more trials extends the search; a changed [search] is refused.
    more = CliRunner().invoke(app, ["tune", str(_grid(tmp_path)), "--out", str(out),
                                    "--quiet", "--trials", "4"])
    assert more.exit_code == 0 and "search: 2 trials finished in this run" in more.output
    changed = _grid(tmp_path, GRID.replace("seed = 5", "seed = 6"))
    refused = CliRunner().invoke(app, ["tune", str(changed), "--out", str(out), "--quiet"])
    assert refused.exit_code == 1 and "was searched with another [search]" in refused.output


def test_trial_killed_before_its_parameters_were_drawn_is_drawn_again(tuned, tmp_path,
                                                                      monkeypatch):
    """The narrowest kill: after a trial was asked, before its parameters were drawn."""
    from stdp_bench import studies

    class Killed(BaseException):
        pass

    def die(trial, spec):
        raise Killed

    grid = load_grid(_grid(tmp_path))
    out = tmp_path / "half-asked"
    monkeypatch.setattr(studies, "suggest", die)
    with pytest.raises(Killed):
        tune_grid(grid, out, progress=False)
    monkeypatch.undo()
    with sqlite3.connect(out / "study.db") as con:
        (params,) = con.execute("select count(*) from trial_params").fetchone()
        (running,) = con.execute("select count(*) from trials where state = 'RUNNING'"
                                 ).fetchone()
    assert (params, running) == (0, 1)  # asked, nothing drawn: then the kill
    tune_grid(grid, out, progress=False)
    cols = ["study", "trial", "state", "value", "rung", "inh", "theta_plus", "time"]
    pd.testing.assert_frame_equal(_trials(out)[cols], _trials(tuned)[cols])


@pytest.mark.parametrize("backend", ["workers", "ray"])
@pytest.mark.slow
def test_tune_on_local_workers_and_ray_gives_the_same_trials(tuned, tmp_path, backend):
    """Rung tasks as worker-process jobs or Ray tasks: the same trials and choices."""
    out = tmp_path / backend
    cmd = [sys.executable, "-m", "stdp_bench", "tune", str(_grid(tmp_path)), "--out",
           str(out), "--quiet", "--replicas", "2"]
    log = tmp_path / "output.txt"
    if backend == "workers":
        code, output, seen = run_watched([*cmd, "--workers", "2"], [], log)
        workers = [c for c in seen.values() if "multiprocessing.spawn" in c]
    else:
        with private_ray_head() as (address, env, head):
            code, output, seen = run_watched([*cmd, "--backend", "ray", "--address",
                                              address], [head], log, env=env)
        # Worker processes run default_worker.py under python; the raylet names that
        # script in its own arguments, so it would count too.
        workers = [c for c in seen.values() if "ray/_private/workers/default_worker.py" in c
                   and "python" in c.split()[0]]
    assert code == 0, output
    # 4 rung batches (2 rounds x 2 rungs), then the final runs: one set of workers
    # serves them all; a pool or a Ray connection per batch started new ones for each
    # (10 worker processes were seen, and 14 Ray workers). The pool starts exactly its
    # 2; Ray, for the head's 2 CPUs, at times a third (a spare, or one replacing an idle
    # worker it reclaimed).
    assert (len(workers) == 2) if backend == "workers" else (1 <= len(workers) <= 4), workers
    cols = ["study", "trial", "state", "value", "rung", "inh", "theta_plus", "time"]
    pd.testing.assert_frame_equal(_trials(out)[cols], _trials(tuned)[cols])
    ours = pd.read_parquet(out / "results.parquet")
    ref = pd.read_parquet(tuned / "results.parquet")
    key = ["stage", "cell_id", "readout"]
    pd.testing.assert_frame_equal(ours.sort_values(key)[key + ["accuracy"]].reset_index(drop=True),
                                  ref.sort_values(key)[key + ["accuracy"]].reset_index(drop=True))


@pytest.mark.parametrize("tells", [1, 3, 4, 7, 9])
def test_run_stopped_between_tells_resumes_to_the_same_trials(tuned, tmp_path, monkeypatch,
                                                              tells):
    """A kill after some trials of a round were told and others were still in flight."""
    import optuna

    class Killed(BaseException):
        pass

    real_tell = optuna.Study.tell
    count = {"n": 0}

    def tell_then_die(self, *args, **kwargs):
        if count["n"] == tells:
            raise Killed
        count["n"] += 1
        return real_tell(self, *args, **kwargs)

    grid = load_grid(_grid(tmp_path))
    out = tmp_path / "stopped"
    monkeypatch.setattr(optuna.Study, "tell", tell_then_die)
    with pytest.raises(Killed):
        tune_grid(grid, out, progress=False)
    monkeypatch.setattr(optuna.Study, "tell", real_tell)
    with sqlite3.connect(out / "study.db") as con:
        running = con.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0]
    assert running > 0
    tune_grid(grid, out, progress=False)
    cols = ["study", "trial", "state", "value", "rung", "inh", "theta_plus", "time"]
    pd.testing.assert_frame_equal(_trials(out)[cols], _trials(tuned)[cols])


def test_replicas_cap_the_final_jobs_too(tuned, tmp_path):
    """--replicas 1: every final cell is a job of its own (it was 8 whatever the option
    said); the default run grouped cells that share shapes."""
    grouped = [json.loads(p.read_text())["provenance"]["replicas"]
               for p in (tuned / "cells").glob("*.json")]
    assert max(grouped) > 1
    out = tmp_path / "one"
    res = CliRunner().invoke(app, ["tune", str(_grid(tmp_path)), "--out", str(out),
                                   "--quiet", "--replicas", "1", "--trials", "1"])
    assert res.exit_code == 0, res.output
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(records) == 8 and {r["provenance"]["replicas"] for r in records} == {1}
