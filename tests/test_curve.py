"""Learning curves: training in segments with labelling and testing between them."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from stdp_bench.cli import app
from stdp_bench.config import ConfigError, make_cell
from stdp_bench.protocol import curve_segments

GRID = """
name = "curve"
[settings]
dataset = "digits"
n_neurons = 10
time = 40
n_train = 50
epochs = 2
n_label = 60
n_test = 80
intensity_hz = 256.0
norm = 10.0
min_spikes = 2
[factors]
curve_every = [{every}]
seed = [0, 1]
"""


def _run(tmp_path, every: int) -> list[dict]:
    path = tmp_path / f"g{every}.toml"
    path.write_text(GRID.format(every=every))
    out = tmp_path / f"out{every}"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    for rec in recs:
        rec["_weights"] = np.load(out / rec["artifacts"]["weights"])
    return sorted(recs, key=lambda r: r["settings"]["seed"])


def test_curve_points_and_same_training_as_one_pass(tmp_path):
    plain, curved = _run(tmp_path, 0), _run(tmp_path, 40)
    for a, b in zip(plain, curved):
        assert a["status"] == b["status"] == "ok"
        # Stopping to label and test leaves training as it was (and the final numbers).
        assert np.array_equal(a["_weights"], b["_weights"])
        assert a["readouts"] == b["readouts"]
        assert "curve" not in a
        points = b["curve"]
        assert [p["train_samples"] for p in points] == [40, 80, 100]  # 2 epochs of 50
        assert points[-1]["accuracy"] == {k: v["accuracy"] for k, v in b["readouts"].items()}
        assert set(points[0]["accuracy"]) == set(b["readouts"])
        assert all(0.0 <= v <= 1.0 for p in points for v in p["accuracy"].values())
        assert b["metrics"]["job_curve_seconds"] > 0


def test_curve_segments():
    assert curve_segments(100, 40) == [(0, 40), (40, 80), (80, 100)]
    assert curve_segments(100, 100) == curve_segments(100, 0) == [(0, 100)]


def test_curve_needs_a_replica_architecture():
    from stdp_bench.cell_checks import check_cell

    with pytest.raises(ConfigError, match="curve_every = 10 .* not available for "
                                          "architecture = 'mlp'"):
        check_cell(make_cell({"family": "ann", "architecture": "mlp", "curve_every": 10}))


def test_plot_draws_the_training_curves(tmp_path, monkeypatch):
    path = tmp_path / "g.toml"
    path.write_text(GRID.format(every=40))
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(path), "--out", str(out)]).exit_code == 0
    res = runner.invoke(app, ["plot", str(out), "--fields", "none"])
    assert res.exit_code == 0, res.output
    fig = out / "figures" / "curve_training.png"
    assert str(fig) in res.output and fig.read_bytes()[:4] == b"\x89PNG"
    # The curve follows --readout (a decision stack is read by its decision, not by
    # counts), with the linear probe beside it.
    import stdp_bench.plots as plots

    drawn = []
    real = plots.training_curves

    def spy(records, path, readouts=("proportion_weighting", "linear"), title=""):
        drawn.append(readouts)
        return real(records, path, readouts=readouts, title=title)

    monkeypatch.setattr(plots, "training_curves", spy)
    for readout in ("all_activity", "linear"):
        res = runner.invoke(app, ["plot", str(out), "--fields", "none", "--readout", readout])
        assert res.exit_code == 0, res.output
    assert drawn == [("all_activity", "linear"), ("linear",)]
