"""``--tensorboard DIR`` on run and tune: event files of every cell's curve points (and
every trial's rungs), read back with tensorboardX's own protobuf."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto import event_pb2
from typer.testing import CliRunner

from stdp_bench.cli import app
from stdp_bench.tensorboard_log import tiles

GRID = """
name = "tb"
[settings]
dataset = "digits"
n_neurons = 9
time = 30
n_train = 40
n_label = 60
n_test = 60
curve_every = 20
[factors]
neuron = ["lif", "adaptive"]
"""


def events(folder: Path) -> dict[tuple[str, str], dict[int, float]]:
    """(tag, scalar | image) -> {step: value (an image's height)} of a folder's event
    files (TFRecord framing: length, its CRC, the Event, its CRC)."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("image"):
                    out.setdefault((v.tag, "image"), {})[event.step] = v.image.height
                else:
                    out.setdefault((v.tag, "scalar"), {})[event.step] = v.simple_value
    return out


def test_run_writes_each_cells_curve_points(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    res = CliRunner().invoke(app, ["run", str(tmp_path / "g.toml"), "--out",
                                   str(tmp_path / "r"), "--quiet", "--tensorboard",
                                   str(tmp_path / "tb")])
    assert res.exit_code == 0, res.output
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "cells").glob("*.json")]
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(
        r["cell_id"] for r in records)
    for rec in records:
        ev = events(tmp_path / "tb" / rec["cell_id"])
        steps = {20: None, 40: None}
        for readout, score in rec["readouts"].items():
            assert set(ev[(f"accuracy/{readout}", "scalar")]) == set(steps)
            # The last point is the record's score (as float32).
            assert ev[(f"accuracy/{readout}", "scalar")][40] == pytest.approx(
                score["accuracy"], abs=1e-6)
        assert ev[("activity/exc_spikes_per_sample", "scalar")][40] == pytest.approx(
            rec["metrics"]["exc_spikes_per_sample"], rel=1e-6)
        assert set(ev[("activity/silent_fraction", "scalar")]) == set(steps)
        assert set(ev[("activity/mean_theta", "scalar")]) == set(steps)
        # 9 receptive fields of 8x8 pixels: a 3x3 grid of tiles with 1-pixel gaps.
        assert ev[("weights", "image")] == {20: 28, 40: 28}


@pytest.mark.slow
def test_tune_writes_each_trials_rungs(tmp_path):
    grid = GRID.replace('name = "tb"', 'name = "tb_tuned"').replace("curve_every = 20\n", "")
    grid += """[search]
trials = 2
batch = 2
rungs = [20]
n_label = 40
n_val = 40
[search.space]
theta_plus = {low = 0.005, high = 0.5, log = true}
"""
    (tmp_path / "g.toml").write_text(grid)
    res = CliRunner().invoke(app, ["tune", str(tmp_path / "g.toml"), "--out",
                                   str(tmp_path / "r"), "--quiet", "--tensorboard",
                                   str(tmp_path / "tb")])
    assert res.exit_code == 0, res.output
    runs = [events(p) for p in (tmp_path / "tb").iterdir()]
    # Trials: the rungs' proportion weighting; the final runs: every readout at n_train.
    rungs = [ev for ev in runs if set(ev) >= {("accuracy/proportion_weighting", "scalar")}
             and ("accuracy/linear", "scalar") not in ev]
    finals = [ev for ev in runs if ("accuracy/linear", "scalar") in ev]
    assert len(rungs) >= 2 and all(
        set(ev[("accuracy/proportion_weighting", "scalar")]) <= {20, 40} for ev in rungs)
    assert finals and all(set(ev[("accuracy/linear", "scalar")]) == {40} for ev in finals)


def test_tiles_scale_each_field_and_leave_gaps():
    img = tiles(np.array([[0.0, 5.0], [2.0, 5.0]]), (1, 2))  # two 1x2 fields, as columns
    assert img.shape == (5, 7) and img.max() == 1.0
    assert img[1, 1:3].tolist() == [0.0, 1.0]  # the first field, scaled to [0, 1]
    assert img[0].sum() == 0 and img[:, 0].sum() == 0  # the gaps
