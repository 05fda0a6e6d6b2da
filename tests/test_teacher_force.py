"""The forcing teacher (``teacher_force``) and settled thresholds (``settle``).

``teacher_force``: while learning, the label's neurons get ``teacher_drive_mv`` a step,
every other neuron loses ``teacher_block_mv`` a step, and only the label's neurons
learn. Parity with stock BindsNET (``injects_v``) is in tests/test_parity.py, the torch
twin in tests/test_replica_network.py; here its equations on hand-made input.

``settle``: after training, thresholds adapt on training samples with the weights frozen;
training itself does not change, so a settled cell trains the network the plain cell
trains.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.cell_checks import check_cell
from stdp_bench.data import load_dataset
from stdp_bench.engine.kernel_engine import ReplicaSet
from stdp_bench.engine.torch_engine import TorchReplicaSet
from stdp_bench.levels.rules import forcing
from stdp_bench.protocol import run_cells
from stdp_bench.replica_params import replica_params, replica_seed

from test_kernel import run_present


def test_block_holds_a_neuron_below_threshold_by_block_times_the_time_constant():
    """A LIF neuron's membrane relaxes to ``rest + I tau`` under a constant input I per
    step (``v <- rest + (v - rest) d + I``, ``d = exp(-1 / tau)``: the fixed point is
    ``rest + I / (1 - d)``). Input 0 brings 0.15 mV a step to both neurons: 15 mV at the
    fixed point with tau = 100 steps, above the 13 mV to threshold. Neuron 0 (the
    label's class) fires; neuron 1 also gets -0.05 mV a step, a fixed point
    (0.15 - 0.05) / (1 - d) = 10 mV above rest, below threshold: it never fires, and
    without the block it does."""
    cfg = CellConfig(neuron="lif", rule="teacher_force", n_neurons=2, time=400,
                     teacher_drive_mv=0.0, teacher_block_mv=0.05, inh=0.0, nu_pre=0.0,
                     nu_post=0.0, wmax=1.0)
    raster = np.ones((400, 1), np.uint8)
    W = np.full((1, 2), 0.15, np.float32)
    spikes = run_present(W, np.zeros(2, np.float32), cfg, raster, label=0, n_classes=2)
    assert spikes[:, 0].sum() >= 1 and spikes[:, 1].sum() == 0
    free = run_present(W, np.zeros(2, np.float32), cfg.with_settings(teacher_block_mv=0.0),
                       raster, label=0, n_classes=2)
    assert free[:, 1].sum() >= 1
    # Learning off: no injection at all, both neurons fire as the free ones did.
    frozen = run_present(W, np.zeros(2, np.float32), cfg, raster, learning=False, label=0,
                         n_classes=2)
    assert np.array_equal(frozen, free)


def test_other_classes_that_fire_through_a_weak_block_do_not_learn():
    """Pair STDP on the label's column only: with no block both neurons fire, the
    label's column gains ``nu_post`` x the pre trace, the other column stays as it was."""
    cfg = CellConfig(neuron="lif", rule="teacher_force", n_neurons=2, time=30,
                     teacher_drive_mv=0.0, teacher_block_mv=0.0, inh=0.0, nu_pre=1e-2,
                     nu_post=1e-2, wmin=0.0, wmax=100.0)
    raster = np.zeros((30, 2), np.uint8)
    raster[5, 0] = 1  # the driver: 20 mV to both neurons, which fire at step 6
    raster[3, 1] = 1  # a pre spike before the post spike
    W0 = np.array([[20.0, 20.0], [0.5, 0.5]], np.float32)
    W = W0.copy()
    spikes = run_present(W, np.zeros(2, np.float32), cfg, raster, label=1, n_classes=2)
    assert spikes[:, 0].nonzero()[0].tolist() == [6] == spikes[:, 1].nonzero()[0].tolist()
    assert np.array_equal(W[:, 0], W0[:, 0])  # neuron 0 is class 0: gated
    d = np.float32(np.exp(-1.0 / cfg.tc_trace_ms))
    assert W[1, 1] == pytest.approx(0.5 + 1e-2 * d ** 3, rel=1e-6)


def test_torch_drive_is_the_kernel_drive():
    cfg = CellConfig(rule="teacher_force", teacher_drive_mv=0.7, teacher_block_mv=0.3)
    rec = np.rec.array(replica_params([cfg], [1.0], 10).rules[0])[0]
    labels = torch.tensor([0, 3, 9])
    p = {k: torch.full((3,), float(rec[k])) for k in forcing.RECORD.names}
    got = forcing.torch_drive(p, labels, 25, 10)
    want = [[forcing.kernel_drive(rec, j, int(lb), 10) for j in range(25)] for lb in labels]
    assert torch.equal(got, torch.tensor(want, dtype=torch.float32))
    assert sorted(set(got.flatten().tolist())) == pytest.approx([-0.3, 0.7])


# ----------------------------------------------------------------------------- settle


def digits_cfg(**settings) -> CellConfig:
    base = dict(dataset="digits", n_neurons=20, time=60, n_train=150, n_label=200,
                n_test=150, intensity_hz=128.0)
    return CellConfig(**(base | settings))


@pytest.mark.slow
def test_settling_moves_thresholds_and_nothing_else():
    ds = load_dataset("digits")
    rs = ReplicaSet([digits_cfg()], n_input=64, gains=[1.0])
    rs.train(ds.x_train, ds.y_train, np.arange(100)[None])
    before = rs.state()
    spikes = rs.settle(ds.x_train, np.arange(100, 160)[None], np.array([60]))
    assert spikes.shape == (1, 60) and spikes.sum() > 0
    assert np.array_equal(rs.W, before["W"])
    assert (rs.theta >= before["theta"] * np.float32(0.999)).all()  # only a slow decay
    assert rs.theta.sum() > before["theta"].sum()


def test_a_settled_cell_trains_the_network_the_plain_cell_trains():
    """Same replica seed, same trained weights; thresholds differ by the settling. Curve
    points settle a copy: had training gone on from settled thresholds, its spikes, and
    so its weights, would differ from the plain cell's by the end."""
    plain = digits_cfg(curve_every=50)
    settled = digits_cfg(settle=100, curve_every=50)
    assert replica_seed(settled) == replica_seed(plain) == replica_seed(digits_cfg())
    ds = load_dataset("digits")
    a, b = run_cells([plain, settled], ds)
    assert np.array_equal(a.model.state["W"], b.model.state["W"])
    assert b.model.state["theta"].sum() > a.model.state["theta"].sum()
    assert [p.train_samples for p in b.curve] == [50, 100, 150]


def test_settle_is_refused_where_it_cannot_run():
    with pytest.raises(ConfigError) as err:
        check_cell(digits_cfg(settle=151), "cell")
    assert str(err.value) == (
        "cell: settle = 151 is more than n_train = 150; the settling samples are the first "
        "of the training order, so settle must be at most n_train")
    with pytest.raises(ConfigError) as err:
        check_cell(digits_cfg(architecture="conv", settle=10, min_spikes=0), "cell")
    assert str(err.value) == (
        "cell: settle = 10 (thresholds settling before the freeze) is not available for "
        "architecture = 'conv'; allowed for: dc2015")


@pytest.mark.slow
def test_the_torch_engine_settles_as_the_kernel_does():
    """Same spike trains (the kernel's streams), no one-spike ties to break differently:
    the same thresholds after training and settling, weights untouched by settling; and
    replica 1 (``counts`` 0) does not settle at all."""
    ds = load_dataset("digits")
    cfgs = [digits_cfg(one_spike=False, seed=s) for s in (0, 1)]
    kernel = ReplicaSet(cfgs, n_input=64, gains=[1.0, 1.0])
    twin = TorchReplicaSet(cfgs, n_input=64, gains=[1.0, 1.0])
    orders = np.tile(np.arange(40), (2, 1))
    for engine in (kernel, twin):
        engine.train(ds.x_train, ds.y_train, orders)
    trained = twin.state()
    assert np.allclose(kernel.theta, trained["theta"], atol=1e-5)
    counts = np.array([30, 0])
    k_spikes = kernel.settle(ds.x_train, orders + 40, counts)
    t_spikes = twin.settle(ds.x_train, orders + 40, counts)
    assert np.array_equal(k_spikes, t_spikes) and k_spikes[0].sum() > 0
    assert not k_spikes[1].any()
    assert np.array_equal(twin.state()["W"], trained["W"])
    assert np.allclose(kernel.theta, twin.state()["theta"], atol=1e-5)
    assert np.array_equal(twin.state()["theta"][1], trained["theta"][1])
    assert (twin.state()["theta"][0] > trained["theta"][0]).any()
