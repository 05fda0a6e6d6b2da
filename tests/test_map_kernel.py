"""The map kernel's competition, written out by hand on a layer small enough to follow.

A conv or local layer of 2 maps with 1x1 fields over a 1x5 input row (5 places), IF
neurons (reset -65 mV, threshold -52 mV, 5 ms refractory), every input spiking at step 0:
at step 1 each place gets its maps' weights as current. Map 0's weight is 20 (margin
-65 + 20 - (-52) = 7 mV), map 1's 18 (margin 5 mV), so both fire everywhere unless
``winners`` says otherwise, and map 0 matches its field better (20 x trace > 18 x trace).
First-spike learning then goes through the candidates best match first, map-major.
"""

from __future__ import annotations

import numpy as np
import pytest

from stdp_bench.config import make_cell
from stdp_bench.engine.map_engine import MapReplicaSet


def _present(arch: str, weights: tuple[float, float], **settings
             ) -> tuple[np.ndarray, list, list]:
    """Spike counts [map, place], first-spike updates (map, row, column) in order, and
    the spike events (step, map-major neuron)."""
    cfg = make_cell({"dataset": "digits", "architecture": arch, "kernel_size": 1,
                     "stride": 1, "n_filters": 2, "time": 3, "neuron": "if", "rule": "stdp",
                     "winners": 2, "conv_learning": "first_spike", "reset_mv": -65.0,
                     "thresh_mv": -52.0, **settings})
    rs = MapReplicaSet([cfg], (1, 1, 5), [1.0])
    L = np.empty_like(rs.L[0])
    L[...] = np.asarray(weights, np.float32)  # every place's field: [map 0, map 1]
    ptr = np.array([0, 5, 5, 5], np.int64)  # all 5 inputs spike at step 0, then none
    idx = np.arange(5, dtype=np.int32)
    counts = np.zeros(10, np.int64)
    events = np.zeros((20, 2), np.int32)
    n_ev = np.zeros(1, np.int64)
    claims = np.zeros((10, 3), np.int64)
    net, pn, pr = rs._records(0)
    rs.kernels[0].present_maps(L, rs.theta[0], rs.geo, rs.fp[0], pn, pr, ptr, idx, 3, True,
                               counts, events, n_ev, np.zeros(1, np.bool_), claims,
                               *rs.kernels[0].fan_out(rs.geo), False)
    end = int(np.flatnonzero(claims[:, 0] < 0)[0]) if (claims[:, 0] < 0).any() else 10
    return (counts.reshape(2, 5), [tuple(c) for c in claims[:end].tolist()],
            [tuple(e) for e in events[:n_ev[0]].tolist()])


def test_both_maps_fire_everywhere_and_each_map_learns_once():
    counts, claims, _ = _present("conv", (20.0, 18.0))
    np.testing.assert_array_equal(counts, np.ones((2, 5)))
    # Map 0 at place 0 first (best match, then map-major order) claims place 0 (fields
    # of 1x1 at stride 1 overlap nothing: radius 0); map 0 has learned, so map 1 learns
    # at the first free place, 1.
    assert claims == [(0, 0, 0), (1, 0, 1)]


def test_winners_keeps_the_largest_margin_and_ties_go_to_the_lower_map():
    # winners = 1: map 0 (margin 7) fires at step 1 everywhere; map 1 (margin 5) keeps its
    # -47 mV. At step 2 map 0's spike inhibits it by conv_inh: -47 - 5 = -52 mV, exactly
    # the threshold, so it fires then; with conv_inh = 6 it falls below and never does.
    counts, _, events = _present("conv", (20.0, 18.0), winners=1, conv_inh=5.0)
    np.testing.assert_array_equal(counts, np.ones((2, 5)))
    assert events == [(1, p) for p in range(5)] + [(2, 5 + p) for p in range(5)]
    counts, _, events = _present("conv", (20.0, 18.0), winners=1, conv_inh=6.0)
    assert events == [(1, p) for p in range(5)]
    # Equal margins (7 mV): the lower map wins; map 1's -45 mV less 8 stays below.
    _, _, events = _present("conv", (20.0, 20.0), winners=1, conv_inh=8.0)
    assert events == [(1, p) for p in range(5)]


@pytest.mark.parametrize("settings, expected", [
    ({"conv_kwta": 1}, [(0, 0, 0)]),
    # Map 0's spike at place 0 claims places 0-2 in every map: map 1 learns at 3.
    ({"conv_radius": 2}, [(0, 0, 0), (1, 0, 3)]),
    ({"conv_radius": 4}, [(0, 0, 0)]),
])
def test_k_winners_and_inhibition_radius(settings, expected):
    assert _present("conv", (20.0, 18.0), **settings)[1] == expected


def test_local_places_learn_separately():
    # Local weights are per place: the better map learns at every place, once each.
    assert _present("local", (20.0, 18.0))[1] == [(0, 0, p) for p in range(5)]
    assert _present("local", (20.0, 18.0), conv_kwta=2)[1] == [(0, 0, 0), (0, 0, 1)]
    assert _present("local", (20.0, 18.0), conv_radius=1)[1] == [(0, 0, 0), (0, 0, 2),
                                                                  (0, 0, 4)]


def test_the_map_kernel_refuses_every_spike_learning_on_shared_kernels():
    # One matrix for all places: every-spike updates per place would write past it.
    cfg = make_cell({"dataset": "digits", "architecture": "conv", "kernel_size": 3,
                     "stride": 1, "n_filters": 2})
    with pytest.raises(ValueError) as err:
        MapReplicaSet([cfg], (1, 8, 8), [1.0])
    assert str(err.value) == ("the map kernel cannot run this cell: conv_learning = "
                              "'every_spike' on shared conv kernels (BindsNET's batch "
                              "update)")


def test_evaluation_leaves_out_unreached_places_and_no_spike_changes():
    """Evaluation steps a place's neurons only from the first input current that reaches
    it (``rest_is_quiet``): the same counts and events, sample by sample, as stepping
    every neuron at every step."""
    from sklearn.datasets import load_digits

    from stdp_bench.levels import random

    T = 40
    cfg = make_cell({"dataset": "digits", "architecture": "conv", "kernel_size": 3,
                     "stride": 1, "n_filters": 4, "time": T, "neuron": "adaptive",
                     "rule": "stdp", "conv_learning": "first_spike", "winners": 2,
                     "intensity_hz": 128.0})
    rs = MapReplicaSet([cfg], (1, 8, 8), [1.0])
    kernel = rs.kernels[0]
    net, pn, pr = rs._records(0)
    # Thresholds as training leaves them, different per neuron.
    rs.theta[0] = np.random.default_rng(0).uniform(0.0, 4.0, rs.theta.shape[1])
    assert kernel.rest_is_quiet(pn, rs.theta[0])
    # Thresholds under the resting potential: a neuron would fire unreached.
    assert not kernel.rest_is_quiet(pn, np.full_like(rs.theta[0], -100.0))
    X = (load_digits().data[:30] / 16).astype(np.float32)
    fan = kernel.fan_out(rs.geo)
    ev_t, ev_i, idx = (np.empty(64 * T + 1, np.int32) for _ in range(3))
    ptr = np.empty(T + 1, np.int64)
    n = rs.theta.shape[1]
    got = {}
    for compact in (False, True):
        counts = np.zeros((len(X), n), np.int64)
        events = np.zeros((len(X), 256, 2), np.int32)
        for s, x in enumerate(X):
            with np.errstate(over="ignore"):  # the seed hash wraps around on purpose
                state = np.array([random.stream_seed(0, 2, s, 0)], np.uint64)
            kernel.gen_events(x, net["rate"], T, net["dt"], state, ev_t, ev_i, ptr, idx)
            kernel.present_maps(rs.L[0], rs.theta[0], rs.geo, rs.fp[0], pn, pr, ptr, idx,
                                T, False, counts[s], events[s], np.zeros(1, np.int64),
                                np.zeros(1, np.bool_), np.zeros((0, 3), np.int64), *fan,
                                compact)
        got[compact] = counts, events
    assert got[False][0].sum() > 100
    np.testing.assert_array_equal(got[True][0], got[False][0])
    np.testing.assert_array_equal(got[True][1], got[False][1])
