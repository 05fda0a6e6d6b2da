"""``rule = "triplet"``: its equations, its torch twin, its setting, and a grid with it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stdp_bench.cli import app
from stdp_bench.config import CellConfig, ConfigError, make_cell
from stdp_bench.data import load_dataset, make_subsets
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.kernel_engine import ReplicaSet
from stdp_bench.engine.torch_engine import TorchReplicaSet
from stdp_bench.grid import expand
from stdp_bench.grid_file import parse_grid
from stdp_bench.levels import registry
from stdp_bench.replica_params import replica_params


def present(cfg: CellConfig, W: np.ndarray, raster: np.ndarray) -> np.ndarray:
    """One learning presentation through the composed kernel, without normalisation."""
    k = kernel_for(cfg.encoder, cfg.neuron, cfg.rule)
    p = replica_params([cfg], [1.0], 10)
    T, n = raster.shape[0], W.shape[1]
    ptr = np.zeros(T + 1, np.int64)
    ptr[1:] = np.cumsum(raster.sum(1))
    idx = np.nonzero(raster)[1].astype(np.int32)
    counts = np.zeros(n, np.int64)
    ev = np.zeros((T * n, 2), np.int32)
    n_ev = np.zeros(1, np.int64)
    k.present(W, np.zeros(n, np.float32), p.network[0], p.neurons[0][0], p.rules[0][0],
              ptr, idx, T, True, True, 0, np.array([1], np.uint64), counts, ev, n_ev,
              np.array([False]), np.zeros(1, np.int64), np.zeros(1, np.int64))
    return ev[: n_ev[0], 0]


def test_golden_trajectory_from_the_equations():
    """Input 0 (20 mV) drives the single LIF neuron: it spikes one step after input 0.

    Pre spikes of input 1 at steps 2 and 15; post spikes at 6 and 12; input 2 silent.
    Written out from the rule (d1 = exp(-1/20) per step for the pre and first post
    trace, d2 = exp(-1/40) for the second post trace):

    * step 2, pre 1: depression by x_post1 = 0 (no post spike yet);
    * step 5, pre 0: depression by x_post1 = 0;
    * step 6, post: potentiation by x_post2 = 0 (first post spike): nothing; x_post2 = 1;
    * step 11, pre 0: w0 -= nu_pre d1^5;
    * step 12, post: x_post2 = d2^6; w0 += nu_post d1^1 d2^6, w1 += nu_post d1^10 d2^6;
    * step 15, pre 1: w1 -= nu_pre d1^3.
    """
    nu_pre, nu_post = 0.01, 0.1
    cfg = make_cell({"neuron": "lif", "rule": "triplet", "n_neurons": 1, "time": 20,
                     "nu_pre": nu_pre, "nu_post": nu_post, "wmax": 100.0, "norm": 1000.0})
    raster = np.zeros((20, 3), np.uint8)
    raster[[2, 15], 1] = 1
    raster[[5, 11], 0] = 1
    W = np.array([[20.0], [0.5], [0.5]], np.float32)
    assert present(cfg, W, raster).tolist() == [6, 12]
    d1, d2 = math.exp(-1 / 20), math.exp(-1 / 40)
    w0 = 20.0 - nu_pre * d1 ** 5 + nu_post * d1 * d2 ** 6
    w1 = 0.5 + nu_post * d1 ** 10 * d2 ** 6 - nu_pre * d1 ** 3
    assert W[0, 0] == pytest.approx(w0, rel=1e-6)
    assert W[1, 0] == pytest.approx(w1, rel=1e-5)
    assert W[2, 0] == np.float32(0.5)


def test_a_lone_post_spike_does_not_potentiate_but_pair_stdp_does():
    raster = np.zeros((10, 2), np.uint8)
    raster[[1, 4], 1] = 1
    raster[5, 0] = 1  # post spike at 6
    base = {"neuron": "lif", "n_neurons": 1, "time": 10, "nu_pre": 0.0, "nu_post": 0.1,
            "wmax": 100.0, "norm": 1000.0}
    W_tri = np.array([[20.0], [0.5]], np.float32)
    W_pair = W_tri.copy()
    present(make_cell({**base, "rule": "triplet"}), W_tri, raster)
    present(make_cell({**base, "rule": "stdp"}), W_pair, raster)
    assert W_tri[1, 0] == np.float32(0.5)
    assert W_pair[1, 0] > 0.5


@pytest.mark.slow
def test_torch_twin_matches_the_kernel_in_a_mixed_job():
    """Triplet rows next to pair-STDP rows in one torch network (LIF: no tie draws)."""
    ds = load_dataset("digits")
    cfgs = [make_cell({"dataset": "digits", "neuron": "lif", "rule": rule, "n_neurons": 12,
                       "time": 40, "norm": 10.0, "intensity_hz": 256.0, "nu_pre": 2e-3,
                       "seed": k, **extra})
            for k, (rule, extra) in enumerate([("triplet", {}), ("stdp", {}),
                                               ("triplet", {"tc_post2_ms": 80.0})])]
    sub = make_subsets(ds, 16, 8, 12, 0)
    orders = np.stack([np.roll(sub.train, k) for k in range(len(cfgs))])
    out = {}
    for name, cls in [("kernel", ReplicaSet), ("torch", TorchReplicaSet)]:
        rs = cls(cfgs, ds.n_input, [1.0] * len(cfgs), 10)
        stats = rs.train(ds.x_train, ds.y_train, orders)
        resp = rs.respond(ds.x_test, np.stack([sub.evaluate] * len(cfgs)), phase=2)
        out[name] = (np.array(rs.W), stats, resp)
    (wk, sk, rk), (wt, st, rt) = out["kernel"], out["torch"]
    assert np.array_equal(sk.exc_spikes, st.exc_spikes) and sk.exc_spikes.sum() > 0
    np.testing.assert_allclose(wk, wt, atol=1e-5)
    assert np.array_equal(rk.counts, rt.counts)
    assert not np.allclose(wk[0], wk[2]), "tc_post2_ms did not reach the rule"


def test_its_setting_is_declared_validated_and_kept_out_of_default_ids():
    p, level = registry.level_params()["tc_post2_ms"]
    assert level.name == "triplet" and p.unit == "ms" and p.default == 40.0
    plain = make_cell({"rule": "triplet"})
    assert plain.tc_post2_ms == 40.0 and plain.level_settings == ()
    assert make_cell({"rule": "triplet", "tc_post2_ms": 40.0}).cell_id() == plain.cell_id()
    slow = make_cell({"rule": "triplet", "tc_post2_ms": 80.0})
    assert slow.tc_post2_ms == 80.0 and slow.cell_id() != plain.cell_id()
    assert slow.to_dict()["tc_post2_ms"] == 80.0 and "level_settings" not in slow.to_dict()
    with pytest.raises(ConfigError) as err:
        parse_grid({"name": "g", "settings": {"rule": "triplet", "tc_post2_ms": -1.0}})
    assert str(err.value) == ("grid [settings]: 'tc_post2_ms' = -1.0 must be greater than "
                              "0.0 (ms)")


def test_conv_layers_refuse_it_at_validation():
    with pytest.raises(ConfigError) as err:
        expand(parse_grid({"name": "g", "settings": {"architecture": "conv",
                                                      "rule": "triplet"}}))
    assert str(err.value) == ("grid 'g', cell settings: rule = 'triplet' cannot run on "
                              "architecture = 'conv': the map kernel cannot (rule 'triplet' "
                              "keeps per-neuron traces the map kernel does not) and it has "
                              "no BindsNET rule (stock_rule)")


def test_a_grid_crossing_triplet_with_pair_stdp_runs_from_the_cli(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text("""
name = "tiny_triplet"
[settings]
dataset = "digits"
n_neurons = 10
time = 30
n_train = 30
n_label = 20
n_test = 30
[factors]
rule = ["stdp", "triplet"]
tc_post2_ms = [40.0, 80.0]
""")
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert (table["status"] == "ok").all() and set(table["rule"]) == {"stdp", "triplet"}
    assert set(table.loc[table["rule"] == "triplet", "tc_post2_ms"]) == {40.0, 80.0}
