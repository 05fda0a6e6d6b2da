"""Thresholds set from the weights at the freeze (``threshold_calibration``).

``weight_norm``: ``thresh - rest + theta_j = kappa ||w_j||_2`` with the mean distance to
threshold kept. It acts after training (after any settling), so a calibrated cell trains
the network the plain cell trains; curve points calibrate a copy; the model file keeps
the thresholds the cell was scored with; both replica engines do the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from stdp_bench.cell_checks import check_cell
from stdp_bench.cli import app
from stdp_bench.config import CellConfig, ConfigError, choices
from stdp_bench.data import load_dataset
from stdp_bench.execution import Execution
from stdp_bench.grid_file import parse_grid
from stdp_bench.model import load_model
from stdp_bench.protocol import Plan, run_cells
from stdp_bench.replica_params import replica_seed
from stdp_bench.runner import run_grid
from stdp_bench.threshold_calibration import (CALIBRATIONS, calibrated_state,
                                               weight_norm_thresholds)


def digits_cfg(**settings) -> CellConfig:
    base = dict(dataset="digits", n_neurons=20, time=60, n_train=150, n_label=200,
                n_test=150, intensity_hz=128.0)
    return CellConfig(**(base | settings))


def test_weight_norm_thresholds_follow_the_norms_and_keep_the_mean_gap():
    """Written from the equation, in float64 by hand: gap + theta' = kappa ||w||, kappa
    = mean(gap + theta) / mean(||w||)."""
    rng = np.random.default_rng(0)
    W = rng.uniform(0, 1, (64, 7)).astype(np.float32)
    theta = rng.uniform(0, 30, 7).astype(np.float32)
    got = weight_norm_thresholds(W, theta, 13.0)
    norms = np.sqrt((W.astype(np.float64) ** 2).sum(0))
    kappa = (13.0 + theta.astype(np.float64)).mean() / norms.mean()
    assert got.dtype == np.float32
    assert np.allclose(got, kappa * norms - 13.0, rtol=1e-6, atol=1e-5)
    assert np.isclose((13.0 + got).mean(), (13.0 + theta).mean(), rtol=1e-6)
    # Only the norm counts: a permuted column has the same threshold.
    assert np.allclose(weight_norm_thresholds(W[::-1], theta, 13.0), got)
    # Floored at 0 (thresholds never below the base one, so never at reset or rest,
    # where a neuron would fire every step): weightless columns, or a weightless network.
    W[:, 0] = 0.0
    floored = weight_norm_thresholds(W, theta, 13.0)
    assert floored[0] == 0.0 and (floored[1:] > 0).all()
    assert np.array_equal(weight_norm_thresholds(np.zeros((3, 2)), np.ones(2), 13.0),
                          np.zeros(2))


def test_every_declared_calibration_has_its_function():
    assert set(CALIBRATIONS) | {"none"} == set(choices("threshold_calibration"))
    with pytest.raises(ConfigError) as err:
        calibrated_state({"W": np.ones((1, 2, 2)), "theta": np.zeros((1, 2))},
                         [digits_cfg(threshold_calibration="l2")])
    assert str(err.value) == ("replica 0: 'threshold_calibration' = 'l2' is not allowed; "
                              "allowed: none, weight_norm")


def test_calibration_is_refused_where_there_are_no_adaptive_thresholds():
    with pytest.raises(ConfigError) as err:
        check_cell(digits_cfg(neuron="lif", threshold_calibration="weight_norm"), "cell")
    assert str(err.value) == (
        "cell: threshold_calibration = 'weight_norm' sets adaptive thresholds, which "
        "neuron = 'lif' has not; allowed neurons: adaptive; or threshold_calibration = "
        "'none'")
    with pytest.raises(ConfigError) as err:
        check_cell(digits_cfg(architecture="conv", min_spikes=0,
                              threshold_calibration="weight_norm"), "cell")
    assert str(err.value) == (
        "cell: threshold_calibration = 'weight_norm' is not available for architecture = "
        "'conv'; allowed for: dc2015")


@pytest.mark.parametrize("engine", ["kernel", pytest.param("torch", marks=pytest.mark.slow)])
def test_a_calibrated_cell_trains_the_plain_cells_network_and_scores_calibrated(engine):
    """Same replica seed and trained weights as the plain (settled) cell; its saved
    thresholds are the plain cell's, calibrated; its curve point calibrated a copy (the
    weights at the end would differ had training gone on from calibrated thresholds).
    The torch engine (BindsNET's Network, slow on a CPU) gets a shorter run."""
    n = 150 if engine == "kernel" else 40
    plain = digits_cfg(settle=n // 3, curve_every=n // 2, n_train=n, n_label=n,
                       n_test=n, time=60 if engine == "kernel" else 30)
    calibrated = plain.with_settings(threshold_calibration="weight_norm")
    bare = plain.with_settings(settle=0, curve_every=0)
    assert replica_seed(calibrated) == replica_seed(plain) == replica_seed(bare)
    a, b = run_cells([plain, calibrated], load_dataset("digits"),
                     execution=Execution("cpu", engine, True))
    W, theta = a.model.state["W"][0], a.model.state["theta"][0]
    assert np.array_equal(b.model.state["W"][0], W)
    assert np.allclose(b.model.state["theta"][0], weight_norm_thresholds(W, theta, 13.0),
                       rtol=1e-6, atol=1e-4)
    assert not np.allclose(b.model.state["theta"][0], theta)
    assert [p.train_samples for p in b.curve] == [n // 2, n]
    assert b.curve[0].accuracy != a.curve[0].accuracy


def test_predict_answers_as_the_calibrated_network_did(tmp_path):
    grid = parse_grid({"name": "calibrated", "settings": {
        "dataset": "digits", "n_neurons": 12, "time": 40, "n_train": 60, "n_label": 80,
        "n_test": 60, "threshold_calibration": "weight_norm"}})
    table = run_grid(grid, tmp_path / "r", progress=False)
    assert (table["threshold_calibration"] == "weight_norm").all()
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("4 of 4 accuracies equal the records'"), res.output


def test_predict_calibrates_a_saved_network_as_a_calibrated_run_would(tmp_path):
    """A plain cell's model file, calibrated by ``predict --threshold-calibration`` and
    labelled again on its own samples, scores what the calibrated cell's run scored (the
    same network, its thresholds set the same way; the labelling and test passes draw
    the same streams). A network without adaptive thresholds is refused, by name."""
    settings = {"dataset": "digits", "n_neurons": 20, "time": 60, "n_train": 150,
                "n_label": 200, "n_test": 150}
    plain = run_grid(parse_grid({"name": "plain", "settings": settings}), tmp_path / "p",
                     progress=False)
    calibrated = run_grid(parse_grid({"name": "cal", "settings": {
        **settings, "threshold_calibration": "weight_norm"}}), tmp_path / "c",
        progress=False)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "p"),
                                   "--threshold-calibration", "weight_norm"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].split() == ["cell", "readout", "thresholds", "labelled", "samples",
                                "accuracy", "recorded", "equal"]
    got = {ln.split()[1]: float(ln.split()[5]) for ln in lines[1:]}
    want = calibrated.set_index("readout")["accuracy"].dropna().to_dict()
    assert got == pytest.approx(want, abs=5e-5) and len(got) == 4  # 4 decimals
    assert all(ln.split()[2] == "weight_norm" and ln.split()[-1] == "None"
               for ln in lines[1:])
    assert got != plain.set_index("readout")["accuracy"].dropna().to_dict()
    bad = CliRunner().invoke(app, ["predict", str(tmp_path / "p"),
                                   "--threshold-calibration", "l2"])
    assert bad.exit_code == 1
    assert ("error: --threshold-calibration: 'threshold_calibration' = 'l2' is not "
            "allowed; allowed: none, weight_norm") in bad.output
    lif = tmp_path / "lif"
    run_grid(parse_grid({"name": "lif", "settings": {**settings, "neuron": "lif"}}), lif,
             progress=False)
    bad = CliRunner().invoke(app, ["predict", str(lif), "--threshold-calibration",
                                   "weight_norm"])
    assert bad.exit_code == 1
    key = next((lif / "cells").glob("*.json")).stem
    assert (f"error: --threshold-calibration, cell {key}: threshold_calibration = "
            "'weight_norm' sets adaptive thresholds, which neuron = 'lif' has not") in bad.output
    bad = CliRunner().invoke(app, ["predict", str(tmp_path / "p"),
                                   "--threshold-calibration", "none"])
    assert bad.exit_code == 1 and "'threshold_calibration' = 'none' is what" in bad.output


def test_a_calibrated_model_predicts_only_once_labelled_again(tmp_path):
    run_grid(parse_grid({"name": "m", "settings": {
        "dataset": "digits", "n_neurons": 12, "time": 40, "n_train": 60, "n_label": 80,
        "n_test": 60}}), tmp_path, progress=False)
    model = load_model(next(tmp_path.glob("artifacts/*/model.npz")))
    ds = load_dataset("digits")
    calibrated = model.calibrated("weight_norm")
    with pytest.raises(ConfigError, match=r"^this model's thresholds were calibrated after "
                                          r"its readouts were fitted; label it again first"):
        calibrated.predict(ds.x_test[:5])
    labelled = calibrated.refit(ds.x_train[:80], ds.y_train[:80])
    assert labelled.predict(ds.x_test[:5], "linear").shape == (5,)
    assert not np.array_equal(labelled.engine.state()["theta"], model.engine.state()["theta"])


def test_a_tuning_trial_scores_its_calibrated_and_settled_cell_as_run_does():
    """``tune`` scores a trial's rungs through ``run_rung``: its last rung must score what
    the cell scores alone through ``run_cells`` (settled, then calibrated), and the
    state it hands the next rung is the network as trained (before the freeze)."""
    from stdp_bench.trial_jobs import RungTask, run_rung

    # Digits settings under which the network learns (about 60% on the validation
    # split, where calibration moves proportion weighting by 5 points).
    cfg = CellConfig(dataset="digits", split="validation", n_neurons=30, time=100,
                     n_train=400, n_label=200, n_test=200, intensity_hz=1024.0, norm=16.0,
                     theta_plus=0.5, settle=30, threshold_calibration="weight_norm")
    ds = load_dataset("digits")
    alone, plain = run_cells([cfg, cfg.with_settings(threshold_calibration="none")], ds)
    assert (alone.readouts["proportion_weighting"].accuracy
            != plain.readouts["proportion_weighting"].accuracy)
    first = run_rung(RungTask((0,), (cfg,), 0, 200, "proportion_weighting"))
    last = run_rung(RungTask((0,), (cfg,), 200, 400, "proportion_weighting",
                             state=first.state))
    assert last.error is None, last.error
    assert float(last.accuracy[0]) == alone.readouts["proportion_weighting"].accuracy
    plan = Plan.of([cfg], ds)
    engine = plan.build(Execution())
    plan.train(engine, 0, 200)
    assert np.array_equal(first.state["theta"], engine.state()["theta"])
