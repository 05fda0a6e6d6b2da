"""What run and tune share (stdp_bench.orchestration): the folder's lock held by another
process, the table that cannot be written, and the option checks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stdp_bench import orchestration
from stdp_bench.cli import app
from stdp_bench.config import ConfigError
from stdp_bench.grid_file import parse_grid
from stdp_bench.errors import OutputError
from stdp_bench.orchestration import Dispatch
from stdp_bench.runner import run_grid

TINY = {"name": "tiny", "settings": {"dataset": "digits", "n_neurons": 8, "time": 30,
                                     "n_train": 20, "n_label": 20, "n_test": 20},
        "factors": {"neuron": ["lif", "adaptive"]}}

# Holds the lock the way another stdp-bench run would, until it is killed.
HOLD = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_folder_locked_by_another_process_is_refused_until_that_process_dies(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as info:
            run_grid(parse_grid(TINY), out, progress=False)
        assert str(info.value) == f"{out} is in use by another run; wait for it to finish"
        assert not (out / "cells").exists() and not (out / "grid.toml").exists()
    finally:
        holder.kill()  # only the process this test started
        holder.wait()
    # The OS released the dead holder's lock; the file it leaves does not matter.
    table = run_grid(parse_grid(TINY), out, progress=False)
    assert set(table["status"]) == {"ok"} and table["cell_id"].nunique() == 2


def test_a_table_that_cannot_be_written_is_one_output_error_line(tmp_path, monkeypatch):
    def full(out_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(orchestration, "rebuild_tables", full)
    out = tmp_path / "res"
    with pytest.raises(OutputError) as info:
        run_grid(parse_grid(TINY), out, progress=False)
    assert str(info.value) == (f"cannot write the results table in {out}: No space left on "
                               "device; the cell records are intact")
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    grid = tmp_path / "tiny.toml"
    grid.write_text('name = "tiny"\n[settings]\ndataset = "digits"\nn_neurons = 8\n'
                    'time = 30\nn_train = 20\nn_label = 20\nn_test = 20\n')
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(tmp_path / "cli"),
                                   "--quiet"])
    assert res.exit_code == 1
    assert res.output == (f"error: cannot write the results table in {tmp_path / 'cli'}: "
                          "No space left on device; the cell records are intact\n")


@pytest.mark.parametrize("dispatch, message", [
    (Dispatch(max_replicas=0), "--replicas 0 must be at least 1"),
    (Dispatch(workers=0), "--workers 0 must be at least 1"),
    (Dispatch(backend="slurm"), "--backend 'slurm' is not allowed; allowed: local, ray"),
    (Dispatch(address="auto"), "--address is for --backend ray"),
], ids=["replicas", "workers", "backend", "address"])
def test_run_and_tune_refuse_bad_options_before_writing(tmp_path, dispatch, message):
    out = tmp_path / "never"

    def execute(session):
        raise AssertionError("no work may start")

    with pytest.raises(ConfigError) as info:
        orchestration.run_in_folder(parse_grid(TINY), out, check_cells=[], data_dir=None,
                                    dispatch=dispatch, execute=execute)
    assert str(info.value) == message
    assert not out.exists()


def test_the_driver_pins_the_commit_once_and_every_record_names_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(orchestration, "checkout_commit",
                        lambda: calls.append(1) or "pinned-by-the-driver")
    monkeypatch.setenv("STDP_BENCH_COMMIT", "an-old-variable-nothing-reads")
    run_grid(parse_grid(TINY), tmp_path / "res", progress=False, max_replicas=1)
    records = [json.loads(p.read_text()) for p in (tmp_path / "res" / "cells").glob("*.json")]
    assert [r["provenance"]["commit"] for r in records] == ["pinned-by-the-driver"] * 2
    assert calls == [1]
