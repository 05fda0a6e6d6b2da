"""Checkpoints inside a job: a run stopped part-way and started again ends exactly as an
uninterrupted one (weights, thresholds, curve points, accuracies), on every engine that
continues from a state; a killed process's rerun resumes from its last checkpoint."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stdp_bench.checkpoints import Checkpoints
from stdp_bench.cli import app
from stdp_bench.config import CellConfig
from stdp_bench.data import load_dataset
from stdp_bench.execution import Execution
from stdp_bench.protocol import run_cells

SMALL = dict(dataset="digits", time=20, n_train=60, n_label=40, n_test=40)
# Cells, execution, and after how many network-samples of progress the job is stopped:
# past training position 40 (labelling and testing at the curve point 25 count too),
# before the next checkpoint.
CASES = {
    "kernel": ([CellConfig(**SMALL, n_neurons=6, neuron=n, curve_every=25)
                for n in ("lif", "adaptive")], Execution(), 2 * 125),
    "torch": ([CellConfig(**SMALL, n_neurons=6, curve_every=25)],
              Execution(engine="torch", pinned=True), 125),
    "conv": ([CellConfig(**SMALL, architecture="conv", kernel_size=4, stride=2,
                         n_filters=3, neuron="lif")], Execution(), 45),
}


class Stop(Exception):
    """Stands for a kill: raised from the progress callback part-way through."""


def _stop_after(samples: int):
    seen = [0]

    def progress(k: int) -> None:
        seen[0] += k
        if seen[0] > samples:
            raise Stop

    return progress


def _same(a, b) -> None:
    assert [o.status for o in a] == [o.status for o in b]
    for x, y in zip(a, b):
        assert {k: s.accuracy for k, s in x.readouts.items()} == \
               {k: s.accuracy for k, s in y.readouts.items()}
        assert x.curve == y.curve
        for key, value in x.model.state.items():
            np.testing.assert_array_equal(value, y.model.state[key], err_msg=key)
        for metric in ("exc_spikes_per_sample", "train_exc_spikes_per_sample"):
            assert x.metrics[metric] == y.metrics[metric], metric


@pytest.mark.parametrize("case", list(CASES))
def test_a_stopped_job_resumes_to_the_uninterrupted_result(case, tmp_path):
    cfgs, execution, stop = CASES[case]
    ds = load_dataset("digits")
    whole = run_cells(cfgs, ds, execution=execution)
    store = Checkpoints(tmp_path, tuple(c.cell_id() for c in cfgs), every=20)
    with pytest.raises(Stop):
        run_cells(cfgs, ds, execution=execution, checkpoints=store,
                  on_progress=_stop_after(stop))
    header, _ = store.load()
    assert header["position"] == 40  # the last checkpoint before the stop
    resumed = run_cells(cfgs, ds, execution=execution, checkpoints=store)
    assert all(o.metrics["resumed_at_sample"] == 40 for o in resumed)
    _same(whole, resumed)


GRID = """
name = "ckpt"
[settings]
dataset = "digits"
n_neurons = 40
time = 250
epochs = 4
n_train = 1000
n_label = 200
n_test = 300
[factors]
neuron = ["lif", "adaptive"]
"""


def _digest(out: Path) -> dict[str, tuple]:
    """Per record: its accuracies and a hash of its model file's arrays."""
    found = {}
    for path in sorted((out / "cells").glob("*.json")):
        rec = json.loads(path.read_text())
        with np.load(out / rec["artifacts"]["model"]) as data:
            blob = b"".join(data[k].tobytes() for k in sorted(data.files) if k != "header")
        found[path.stem] = ({k: v["accuracy"] for k, v in rec["readouts"].items()},
                            hashlib.sha256(blob).hexdigest())
    return found


def _args(*args: str) -> list[str]:
    return ["run", *args, "--quiet", "--checkpoint-every", "500"]


def _run_here(*args: str) -> None:
    # In this process: only the run that is killed needs a process of its own (and a
    # second interpreter start costs more than this run's training).
    res = CliRunner().invoke(app, _args(*args))
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_bit_identically(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    whole = tmp_path / "whole"
    _run_here(str(grid), "--out", str(whole))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "stdp_bench",
                             *_args(str(grid), "--out", str(out))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("*.npz")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the process this test started, nothing else
    proc.wait()
    saved = list((out / "checkpoints").glob("*.npz"))
    assert saved and not list((out / "cells").glob("*.json"))
    _run_here(str(grid), "--out", str(out))
    resumed = [json.loads(p.read_text())["metrics"].get("resumed_at_sample")
               for p in (out / "cells").glob("*.json")]
    assert resumed[0] and resumed[0] % 500 == 0 and len(set(resumed)) == 1, resumed
    assert _digest(out) == _digest(whole)
    assert not list((out / "checkpoints").glob("*.npz"))  # removed with the records
