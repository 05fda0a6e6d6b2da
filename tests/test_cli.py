"""The CLI end to end on digits, through Typer's CliRunner."""

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from stdp_bench.cli import app

runner = CliRunner()

TINY = """
name = "tiny"
description = "test grid"
[settings]
dataset = "digits"
n_neurons = 10
time = 40
n_train = 60
n_label = 60
n_test = 80
intensity_hz = 256.0
norm = 10.0
[factors]
encoder = ["poisson", "bernoulli"]
rule = ["stdp", "none"]
seed = [0]
"""


@pytest.fixture()
def grid_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_run_show_plot_and_resume(tmp_path, grid_file):
    out = tmp_path / "res"
    res = run("run", grid_file, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 * 4  # cells x readouts
    assert set(table["readout"]) == {"all_activity", "proportion_weighting", "ngram", "linear"}
    for col in ("encoder", "rule", "seed", "accuracy", "exc_spikes_per_sample",
                "silent_fraction", "synops_per_sample", "input_spikes_per_sample",
                "train_seconds", "eval_seconds", "config_hash", "commit", "status"):
        assert col in table.columns, col
    assert table["accuracy"].between(0, 1).all()
    assert (out / "results.csv").exists() and (out / "grid.toml").exists()
    records = sorted((out / "cells").glob("*.json"))
    assert len(records) == 4
    stamps = {p.name: p.stat().st_mtime_ns for p in records}

    # Rerun: nothing recomputed, same table.
    res = run("run", grid_file, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == stamps
    assert len(pd.read_parquet(out / "results.parquet")) == 16

    res = run("show", out)
    assert res.exit_code == 0, res.output
    assert "ci95_low" in res.output and "poisson" in res.output
    res = run("show", out, out, "--where", "encoder=bernoulli", "--where", "n_neurons=10",
              "--by", "encoder")
    assert res.exit_code == 0, res.output
    assert "bernoulli" in res.output and "poisson" not in res.output
    assert " 16 " in res.output  # both folders stacked: 2 x 2 cells x 4 readouts
    res = run("show", out, "--where", "encoder=morse,bernoulli", "--where",
              "readout=linear", "--by", "rule", "--top", "1")
    assert res.exit_code == 0, res.output
    assert len(res.output.strip().splitlines()) == 2  # header + the best group
    res = run("show", out, "--where", "encoder=morse")
    assert res.exit_code == 1 and "no rows match encoder=morse" in res.output

    res = run("plot", out, "--facet", "seed")
    assert res.exit_code == 0, res.output
    assert any((out / "figures").glob("heatmap_*.png"))
    assert any((out / "figures").glob("receptive_fields_*.png"))
    for f in (out / "figures").glob("receptive_fields_*.png"):
        f.unlink()
    res = run("plot", out, "--fields", "best", "--curve", "encoder")
    assert res.exit_code == 0, res.output
    assert len(list((out / "figures").glob("receptive_fields_*.png"))) == 1
    assert (out / "figures" / "curve_accuracy_encoder.png").exists()


def test_set_pins_factor_and_same_seed_same_numbers(tmp_path, grid_file):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        res = run("run", grid_file, "--out", out, "--quiet", "--set", "rule=stdp",
                  "--set", "encoder=poisson")
        assert res.exit_code == 0, res.output
    ta, tb = (pd.read_parquet(p / "results.parquet") for p in (a, b))
    assert len(ta) == 4
    assert ta["accuracy"].tolist() == tb["accuracy"].tolist()
    rec = json.loads(next((a / "cells").glob("*.json")).read_text())
    assert rec["settings"]["rule"] == "stdp" and rec["provenance"]["versions"]["bindsnet"]


@pytest.mark.parametrize("args, needle", [
    (["run", "nonexistent_grid"], "neither a file nor a shipped grid"),
    (["run", "smoke", "--set", "rule=backprop"], "'rule' = 'backprop'"),
    (["run", "smoke", "--set", "n_neurons=-3"], "'n_neurons' = -3"),
    (["run", "smoke", "--limit-train", "0"], "--limit-train 0"),
    (["run", "smoke", "--set", "dataset=mnist", "--data-dir", "/nonexistent"],
     "dataset 'mnist': no files in /nonexistent/MNIST/raw; expected there: "),
    (["run", "smoke", "--device", "cuda", "--engine", "kernel"],
     "CPU only" if torch.cuda.is_available() else "no CUDA device"),
    (["run", "smoke", "--engine", "warp"], "'warp' is not allowed"),
], ids=["missing-grid", "bad-level", "negative", "bad-limit", "missing-data", "cuda-refused",
        "bad-engine"])
def test_bad_input_fails_before_work(tmp_path, args, needle):
    out = tmp_path / "never"
    res = run(*args, "--out", out)
    assert res.exit_code == 1
    assert needle in res.output
    assert not out.exists()


def test_other_grid_in_results_folder_refused(tmp_path, grid_file):
    out = tmp_path / "res"
    out.mkdir()
    (out / "grid.toml").write_text('name = "other"\n')
    res = run("run", grid_file, "--out", out, "--quiet")
    assert res.exit_code == 1 and "grid 'other'" in res.output


def test_grids_lists_shipped_grids():
    res = run("grids")
    assert res.exit_code == 0
    assert "factorial" in res.output and "135 cells" in res.output
