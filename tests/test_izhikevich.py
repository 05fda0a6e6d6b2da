"""``neuron = "izhikevich"``: parity with BindsNET's ``IzhikevichNodes``, its torch twin,
and a grid with it (and ``rule = "triplet"``) from the CLI."""

from __future__ import annotations

import pytest
import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from stdp_bench.cli import app
from stdp_bench.config import make_cell
from stdp_bench.data import load_dataset, make_subsets
from stdp_bench.engine.kernel_engine import KernelReplica, ReplicaSet
from stdp_bench.engine.torch_engine import TorchReplicaSet
from stdp_bench.levels import registry
from stdp_bench.levels.neurons import izhikevich
from stdp_bench.networks import build_stock_network, run_stock_presentation
from stdp_bench.replica_params import initial_weights, replica_params

STEPS = 600


def test_step_matches_stock_izhikevich_nodes_for_600_steps():
    """The level's kernel step (as Python, float32) and its torch twin against stock
    ``IzhikevichNodes`` fed the same input currents, neuron by neuron, step by step."""
    n = 20
    cfg = make_cell({"neuron": "izhikevich", "izh_a": 0.02, "izh_b": 0.25, "izh_d": 2.0})
    stock = izhikevich.stock_layer(cfg, n)
    stock.set_batch_size(1)
    stock.compute_decays(cfg.dt)
    stock.train(True)
    gen = torch.Generator().manual_seed(3)
    currents = (torch.rand(STEPS, 1, n, generator=gen) * 30.0 - 5.0).float()
    p = np.rec.array(replica_params([cfg], [1.0], 10).neurons[0])[0]
    st = np.zeros((3, n), np.float32)
    izhikevich.kernel_reset(p, st)
    tp = {k: torch.tensor([[float(p[k])]]) for k in p.dtype.names}
    tst = {"v": torch.zeros(1, n), "u": torch.zeros(1, n), "spiked": torch.zeros(1, n)}
    izhikevich.torch_reset(tp, tst)
    total = 0
    for t in range(STEPS):
        x = currents[t]
        stock.forward(x.clone())
        ours = np.array([izhikevich.kernel_step(p, st, None, j, np.float32(x[0, j]), True)
                         for j in range(n)])
        twin = izhikevich.torch_step(tp, tst, x, True)
        assert np.array_equal(ours, stock.s[0].numpy()), f"step {t}"
        assert torch.equal(twin, stock.s), f"step {t} (torch twin)"
        np.testing.assert_allclose(st[0], stock.v[0].numpy(), rtol=1e-6, atol=1e-4)
        assert torch.allclose(tst["u"], stock.u, atol=1e-4)
        total += int(ours.sum())
    assert total > 50, total  # not vacuous: the neurons fired throughout


def test_kernel_network_matches_stock_network_with_izhikevich_neurons():
    """The composed kernel and the stock Diehl & Cook network with ``IzhikevichNodes``:
    6 presentations of 100 steps (600 steps), learning on and off."""
    cfg = make_cell({"dataset": "digits", "neuron": "izhikevich", "rule": "stdp",
                     "n_neurons": 12, "time": 100, "norm": 64.0, "wmax": 2.0, "inh": 5.0,
                     "nu_pre": 2e-3, "nu_post": 1e-2, "seed": 4})
    d = load_digits()
    xs = (d.data[:6] / 16.0).astype(np.float32)
    w0 = initial_weights(cfg, 64)
    net = build_stock_network(cfg, 64, w0)
    rep = KernelReplica(cfg, w0.numpy())
    gen = torch.Generator().manual_seed(9)
    spikes_total = 0
    for k, learning in enumerate([True, True, False, True, True, False]):
        p = torch.from_numpy(xs[k]) * 0.4
        train = torch.bernoulli(p.expand(100, -1), generator=gen).to(torch.uint8)
        raster_k, n_k, _ = rep.present(train.numpy(), learning=learning, label=0)
        raster_s = run_stock_presentation(net, train, learning)
        assert torch.equal(torch.from_numpy(raster_k), raster_s), f"presentation {k}"
        w_s = net.connections[("X", "Ae")].w.detach()
        assert torch.allclose(torch.from_numpy(rep.W), w_s, atol=1e-5), f"presentation {k}"
        spikes_total += n_k
    assert spikes_total > 30, spikes_total


@pytest.mark.slow
def test_torch_twin_matches_the_kernel_engine():
    ds = load_dataset("digits")
    base = {"dataset": "digits", "neuron": "izhikevich", "n_neurons": 12, "time": 40,
            "norm": 40.0, "wmax": 2.0, "inh": 5.0, "intensity_hz": 256.0}
    cfgs = [make_cell({**base, "rule": rule, "seed": k})
            for k, rule in enumerate(["stdp", "weight_dependent", "none"])]
    cfgs.append(make_cell({**base, "neuron": "lif", "norm": 10.0, "seed": 9}))
    sub = make_subsets(ds, 16, 8, 12, 0)
    orders = np.stack([np.roll(sub.train, k) for k in range(len(cfgs))])
    out = {}
    for name, cls in [("kernel", ReplicaSet), ("torch", TorchReplicaSet)]:
        rs = cls(cfgs, ds.n_input, [1.0] * len(cfgs), 10)
        stats = rs.train(ds.x_train, ds.y_train, orders)
        resp = rs.respond(ds.x_test, np.stack([sub.evaluate] * len(cfgs)), phase=2)
        out[name] = (np.array(rs.W), stats, resp)
    (wk, sk, rk), (wt, st, rt) = out["kernel"], out["torch"]
    assert np.array_equal(sk.exc_spikes, st.exc_spikes) and (sk.exc_spikes.sum(1) > 0).all()
    np.testing.assert_allclose(wk, wt, atol=1e-4)
    assert np.array_equal(rk.counts, rt.counts)


def test_its_settings_are_declared_with_units():
    declared = {p.name: p for p in registry.get("neuron", "izhikevich").params}
    assert set(declared) == {"izh_a", "izh_b", "izh_c_mv", "izh_d", "izh_thresh_mv"}
    assert declared["izh_c_mv"].unit == "mV" and declared["izh_thresh_mv"].default == 45.0


def test_a_grid_with_izhikevich_and_triplet_runs_from_the_cli(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text("""
name = "izhikevich_triplet"
[settings]
dataset = "digits"
neuron = "izhikevich"
rule = "triplet"
n_neurons = 10
time = 40
n_train = 40
n_label = 30
n_test = 30
inh = 5.0
norm = 64.0
wmax = 2.0
intensity_hz = 400.0
[factors]
izh_d = [2.0, 8.0]
""")
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert (table["status"] == "ok").all() and set(table["izh_d"]) == {2.0, 8.0}
    assert (table["exc_spikes_per_sample"] > 0).all()
