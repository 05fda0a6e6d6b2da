"""Parity of the fused map kernel with the BindsNET conv / local layers.

For each case the map engine (:class:`~stdp_bench.engine.map_engine.MapReplicaSet`) and
the BindsNET network (:class:`~stdp_bench.engine.feature_engine.FeatureCell`, stock
``Network.run`` with this package's conv / local classes) start from the same weights
and see the same input spikes (both draw them from the counter-based streams keyed by
sample position). After every training presentation they must have

* exactly the same number of map spikes;
* the same weights within float tolerance, and the same adaptive thresholds;

and afterwards the same frozen responses: spike counts and (step, neuron) events, exactly.

Weights are compared within float tolerance because BindsNET sums input currents with a
convolution (or a matmul) and normalisation sums in float32 in its own order, the kernel
in index order (and the sums in float64); BindsNET also renormalises after every
evaluation run, which moves weights by rounding only. Spikes could in principle differ
where a membrane potential lands within that rounding of the threshold; on these cases
they do not.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from stdp_bench.config import make_cell
from stdp_bench.engine.feature_engine import FeatureCell
from stdp_bench.engine.map_engine import MapReplicaSet, bindsnet_weights

CASES = [  # architecture, neuron, rule, conv_learning, channels[, other settings]
    ("conv", "if", "hebbian", "first_spike", 1),
    ("conv", "lif", "weight_dependent", "first_spike", 1),
    ("conv", "adaptive", "stdp", "first_spike", 1),
    ("conv", "adaptive", "none", "first_spike", 1),
    ("conv", "adaptive", "stdp", "first_spike", 2),
    ("local", "adaptive", "stdp", "first_spike", 1),
    ("local", "lif", "weight_dependent", "every_spike", 1),
    ("local", "if", "hebbian", "every_spike", 2),
    # Kheradpisheh's competition: k winners an image, an inhibition radius.
    ("conv", "adaptive", "stdp", "first_spike", 1, (("conv_kwta", 2), ("conv_radius", 2))),
    ("local", "if", "hebbian", "first_spike", 1, (("conv_kwta", 3), ("conv_radius", 1))),
]
N_TRAIN = 12
N_TEST = 40


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x = (load_digits().data / 16).astype(np.float32)
    # A second channel (as DoG on / off inputs have): the inverted image.
    return np.concatenate([x, 1 - x], axis=1)


def _pair(arch: str, neuron: str, rule: str, learning: str, channels: int,
          settings: tuple = ()):
    cfg = make_cell(dict(dataset="digits", architecture=arch, kernel_size=3, stride=1,
                         n_filters=4, time=60, neuron=neuron, rule=rule,
                         conv_learning=learning, winners=2, intensity_hz=128.0,
                         conv_norm=3.0 * channels, nu_post=0.05, **dict(settings)))
    shape = (channels, 8, 8)
    return FeatureCell(cfg, shape, 1.0, 10), MapReplicaSet([cfg], shape, [1.0])


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c[:5])) + "-kwta" * (len(c) > 5)
                                             for c in CASES])
def test_map_kernel_matches_bindsnet_layers(case, images):
    channels = case[4]
    X = images[:, :64 * channels]
    Y = np.zeros(len(X), np.int64)
    stock, maps = _pair(*case)
    conn = stock.network.connections[("X", "Ae")]
    w_start = conn.w.detach().numpy().copy()
    F, h, w = maps.shape
    spikes = 0
    for k in range(N_TRAIN):
        order = np.array([[k]])
        a = stock.train(X, Y, order, start=k).exc_spikes[0, 0]
        b = maps.train(X, Y, order, start=k).exc_spikes[0, 0]
        assert a == b, f"presentation {k}: {a} spikes in BindsNET, {b} in the kernel"
        spikes += a
        wb = conn.w.detach().numpy()
        np.testing.assert_allclose(bindsnet_weights(maps.L[0], maps.geo).reshape(wb.shape),
                                   wb, rtol=0, atol=2e-6)
        theta = maps.theta[0].reshape(h * w, F).T.ravel()  # place-major -> map-major
        np.testing.assert_allclose(theta, stock.network.layers["Ae"].theta.numpy().ravel(),
                                   rtol=0, atol=1e-6)
    assert spikes > 0
    if case[2] != "none":  # the comparison above saw learning, not just normalisation
        assert np.abs(conn.w.detach().numpy() - w_start).max() > 1e-3
    order = np.arange(N_TEST)[None]
    want = stock.respond(X, order, phase=1)
    got = maps.respond(X, order, phase=1)
    assert want.counts.sum() > 0
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.n_events, want.n_events)
    np.testing.assert_array_equal(got.events, want.events)
    np.testing.assert_array_equal(got.in_spikes, want.in_spikes)
