"""Kheradpisheh's multiplicative STDP (``multiplicative``): golden values from its
equation through the dense kernel, its torch twin, and a conv layer that learns with it
through the map kernel's first-spike path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdp_bench.config import CellConfig
from stdp_bench.data import load_dataset
from stdp_bench.engine.map_engine import initial_layer
from stdp_bench.levels.rules import multiplicative
from stdp_bench.protocol import run_cells
from stdp_bench.replica_params import replica_params

from test_kernel import run_present


def test_golden_update_from_the_equation():
    """One LIF neuron 0.5 mV below threshold. Input 1 (0.3) fires at step 2, input 0
    (0.9) at step 5: the neuron fires at step 6 (currents arrive a step later). At that
    spike inputs 0 and 1 have fired (up by a+ w(1-w)), input 2 fires only at step 8 and
    input 3 never (down by a- w(1-w)); input 2's later spike changes nothing."""
    a_minus, a_plus = 0.003, 0.004
    cfg = CellConfig(neuron="lif", rule="multiplicative", n_neurons=1, time=12,
                     thresh_mv=-64.5, reset_mv=-65.0, nu_pre=a_minus, nu_post=a_plus,
                     wmin=0.0, wmax=1.0)
    raster = np.zeros((12, 4), np.uint8)
    raster[2, 1] = raster[5, 0] = raster[8, 2] = 1
    w0 = np.array([0.9, 0.3, 0.3, 0.5], np.float32)
    W = w0[:, None].copy()
    spikes = run_present(W, np.zeros(1, np.float32), cfg, raster)
    assert spikes[:, 0].nonzero()[0].tolist() == [6]
    f32 = np.float32
    soft = w0 * (f32(1.0) - w0)
    want = [w0[0] + f32(a_plus) * soft[0], w0[1] + f32(a_plus) * soft[1],
            w0[2] - f32(a_minus) * soft[2], w0[3] - f32(a_minus) * soft[3]]
    assert W[:, 0].tolist() == pytest.approx(want, rel=1e-6)


def test_torch_twin_is_the_kernel_update():
    rng = np.random.default_rng(3)
    cfg = CellConfig(rule="multiplicative", nu_pre=0.003, nu_post=0.004)
    rec = np.rec.array(replica_params([cfg], [1.0], 10).rules[0])[0]
    W = rng.uniform(0, 1, (20, 6)).astype(np.float32)
    x_in = np.where(rng.uniform(size=20) < 0.4, rng.uniform(0.1, 1, 20), 0).astype(np.float32)
    fired = np.array([1, 4])
    Wk = W.copy()
    multiplicative.kernel_update(rec, Wk, x_in, None, None, None, np.zeros(0, np.int64), 0,
                                 0, fired, 2, fired, 2, -1, 10, None)
    Wt = torch.from_numpy(W.copy())[None]
    s_out = torch.zeros(1, 6, dtype=torch.bool)
    s_out[0, fired] = True
    p = {k: torch.tensor([float(rec[k])]) for k in multiplicative.RECORD.names}
    multiplicative.torch_update(p, Wt, torch.tensor([0]), None, torch.from_numpy(x_in)[None],
                                s_out, None, None, None, 10)
    assert np.allclose(Wt[0].numpy(), Wk, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(Wk[:, fired], W[:, fired])
    assert np.array_equal(Wk[:, [0, 2, 3, 5]], W[:, [0, 2, 3, 5]])


@pytest.mark.slow
def test_a_conv_layer_learns_with_it_on_the_map_kernel():
    """First-spike learning with the multiplicative rule runs on the map kernel (it has
    no BindsNET class) and moves the filters."""
    cfg = CellConfig(architecture="conv", dataset="digits", kernel_size=5, stride=1,
                     n_filters=6, time=30, n_train=60, n_label=100, n_test=50,
                     conv_learning="first_spike", rule="multiplicative", nu_pre=0.03,
                     nu_post=0.04, min_spikes=0, intensity_hz=256.0)
    out, = run_cells([cfg], load_dataset("digits"))
    assert out.status.value == "ok" and out.metrics["exc_spikes_per_sample"] > 0
    L0, _ = initial_layer(cfg, (1, 8, 8))
    L = out.model.state["L"][0]
    assert np.isfinite(L).all() and L.shape == L0.shape
    assert np.abs(L - L0).max() > 1e-3
