"""The torch engine (BindsNET replica ``Network``) against the fused kernel, end to end.

Both engines encode with the same counter-based streams, so for neuron models without
the one-spike tie-break (IF, LIF) a whole job - training with every rule, retries, then
frozen responses - must give the same responses exactly and weights within float
tolerance. Adaptive neurons draw their tie-breaks from each engine's own stream, so only
their statistics are compared (through accuracy in the CLI test).
"""

from __future__ import annotations

import pytest
import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from stdp_bench.cli import app
from stdp_bench.config import CellConfig
from stdp_bench.data import load_dataset, make_subsets
from stdp_bench.engine.kernel_engine import ReplicaSet
from stdp_bench.engine.torch_engine import TorchReplicaSet

KINDS = [("lif", "stdp", 0), ("if", "hebbian", 0), ("lif", "teacher", 0),
         ("lif", "weight_dependent", 0), ("lif", "none", 0), ("lif", "stdp", 40)]


@pytest.mark.slow
def test_torch_engine_matches_kernel_without_ties():
    ds = load_dataset("digits")
    cfgs = [CellConfig(dataset="digits", neuron=nm, rule=r, n_neurons=12, time=40,
                       norm=10.0, intensity_hz=256.0, min_spikes=ms, max_retries=2,
                       encoder=enc, seed=k)
            for k, ((nm, r, ms), enc) in enumerate(zip(KINDS, ["poisson", "bernoulli",
                                                                "rank_order"] * 2))]
    sub = make_subsets(ds, 16, 8, 12, 0)
    train_orders = np.stack([np.roll(sub.train, k) for k in range(len(cfgs))])
    eval_orders = np.stack([sub.evaluate] * len(cfgs))
    out = {}
    for name, cls in [("kernel", ReplicaSet), ("torch", TorchReplicaSet)]:
        rs = cls(cfgs, ds.n_input, [1.0] * len(cfgs), 10)
        stats = rs.train(ds.x_train, ds.y_train, train_orders)
        resp = rs.respond(ds.x_test, eval_orders, phase=2)
        out[name] = (np.array(rs.W), stats, resp)
    (wk, sk, rk), (wt, st, rt) = out["kernel"], out["torch"]
    assert np.array_equal(sk.exc_spikes, st.exc_spikes)
    assert np.array_equal(sk.in_spikes, st.in_spikes)
    assert np.array_equal(sk.retries, st.retries)
    assert sk.retries[-1].sum() > 0, "the retry path went untested"
    np.testing.assert_allclose(wk, wt, atol=1e-5)
    assert np.array_equal(rk.counts, rt.counts)
    assert np.array_equal(rk.n_events, rt.n_events)
    assert np.array_equal(rk.events, rt.events)
    assert np.array_equal(rk.in_spikes, rt.in_spikes)
    assert rk.counts.sum() > 0


def test_cli_runs_the_torch_engine(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text("""
name = "tiny_torch"
[settings]
dataset = "digits"
n_neurons = 10
time = 30
n_train = 20
n_label = 20
n_test = 30
intensity_hz = 256.0
norm = 10.0
[factors]
neuron = ["adaptive", "lif"]
""")
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(tmp_path / "r"), "--quiet",
                                   "--engine", "torch", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert len(table) == 8 and (table["status"] == "ok").all()
    rec = json.loads(next((tmp_path / "r" / "cells").glob("*.json")).read_text())
    assert rec["provenance"]["engine"] == "torch" and rec["provenance"]["device"] == "cpu"


@pytest.mark.parametrize("engine", [ReplicaSet, TorchReplicaSet])
def test_training_in_segments_is_training_in_one_call(engine):
    # What learning curves rely on: stopping between segments (start=) changes nothing.
    ds = load_dataset("digits")
    cfgs = [CellConfig(dataset="digits", neuron="lif", rule=r, n_neurons=8, time=30,
                       norm=10.0, intensity_hz=256.0, min_spikes=2, max_retries=2, seed=k)
            for k, r in enumerate(["stdp", "weight_dependent"])]
    orders = np.stack([np.arange(24), np.arange(24)[::-1]])
    whole = engine(cfgs, ds.n_input, [1.0, 1.0], ds.n_classes)
    a = whole.train(ds.x_train, ds.y_train, orders)
    parts = engine(cfgs, ds.n_input, [1.0, 1.0], ds.n_classes)
    b1 = parts.train(ds.x_train, ds.y_train, orders[:, :10])
    b2 = parts.train(ds.x_train, ds.y_train, orders[:, 10:], start=10)
    assert np.array_equal(np.asarray(whole.W), np.asarray(parts.W))
    assert np.array_equal(a.exc_spikes, np.concatenate([b1.exc_spikes, b2.exc_spikes], 1))
    assert np.array_equal(a.retries, np.concatenate([b1.retries, b2.retries], 1))
    assert a.exc_spikes.sum() > 0
