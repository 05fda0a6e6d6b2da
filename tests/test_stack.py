"""Layer stacks (architecture ``stack``): the event-driven kernel against its torch twin
(SpykeTorch's dense formulation), golden pooling / inhibition / k-winners cases written
out by hand, the layer declarations' validation, and a stack cell through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdp_bench.config import ConfigError, check_value, make_cell
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.stack_engine import StackReplicaSet, stack_geometry
from stdp_bench.networks import stack_torch
from stdp_bench.levels.stack_spec import parse_layers, stack_layers

SPEC = ("conv(maps=4,kernel=3,pad=1,threshold=1.2,winners=3,radius=1,epochs=1,"
        "a_plus=0.05,a_minus_ratio=0.75);pool(kernel=2,stride=2,pad=1);"
        "conv(maps=5,kernel=2,pad=1,threshold=0.9,winners=2,radius=1,epochs=1,"
        "a_plus=0.05,inhibit_input=true);pool(kernel=2,stride=2)")


def _cell(rule: str = "multiplicative", spec: str = SPEC, n_train: int = 6):
    return make_cell(dict(dataset="digits", architecture="stack", encoder="latency",
                          neuron="if", rule=rule, time=6, n_train=n_train, epochs=2,
                          layers=spec))


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 64), dtype=np.float32)
    x[x < 0.4] = 0.0  # a latency code leaves zeros silent
    return x


def _input_times(x: np.ndarray, T: int) -> torch.Tensor:
    """The latency code's first steps of one image, as the kernel encodes it."""
    kernel = kernel_for("latency", "if", "none")
    ev_t = np.zeros(x.size * T + 1, np.int32)
    ev_i = np.zeros(x.size * T + 1, np.int32)
    m = kernel.encode(x.astype(np.float32), 0.0, T, 1.0, np.zeros(1, np.uint64), ev_t, ev_i)
    t = np.full(x.size, T, np.int64)
    t[ev_i[:m]] = ev_t[:m]
    return torch.as_tensor(t).view(1, 8, 8)


def test_training_and_responses_match_the_torch_twin():
    cfg = _cell()
    rs = StackReplicaSet([cfg], (1, 8, 8))
    layers = rs.layers
    T = 6
    kernels = [torch.as_tensor(rs.filters(0, n)).clone() if lay.kind == "conv" else None
               for n, lay in enumerate(layers)]
    X = _images(6)
    order = np.arange(6)
    # Layer 0 for 6 images, then layer 2 for 6 (the greedy schedule, epochs 1 each).
    rs.train(X, np.zeros(6, np.int64), np.concatenate([order, order])[None], start=0)
    for layer in (0, 2):
        a, r = layers[layer].rates(0)
        for x in X:
            stack_torch.train_image(_input_times(x, T), layers, kernels, T, layer, a, r)
        assert torch.equal(torch.as_tensor(rs.filters(0, layer)), kernels[layer]), layer
    # Frozen responses: the last layer's first spikes, every unit.
    resp = rs.respond(X, order[None], phase=2)
    for k, x in enumerate(X):
        times = stack_torch.stack_times(_input_times(x, T), layers, kernels, T)[-1].flatten()
        np.testing.assert_array_equal(resp.counts[0, k], (times < T).numpy())
        n = int(resp.n_events[0, k])
        steps = np.sort(times[times < T].numpy())
        np.testing.assert_array_equal(resp.events[0, k, :n, 0], steps)


def test_weights_moved_and_winners_learn_in_the_kernel():
    cfg = _cell()
    rs = StackReplicaSet([cfg], (1, 8, 8))
    before = rs.W.copy()
    rs.train(_images(6), np.zeros(6, np.int64), np.arange(6)[None], start=0)
    moved = np.flatnonzero(rs.W[0] != before[0])
    geo = rs.geo
    n_layer0 = int(geo[0, 1] * geo[0, 7] ** 2 * geo[0, 4])
    assert moved.size > 0 and moved.max() < n_layer0  # layer 0 only, as scheduled


def test_rule_none_keeps_the_drawn_weights():
    rs = StackReplicaSet([_cell("none")], (1, 8, 8))
    before = rs.W.copy()
    rs.train(_images(6), np.zeros(6, np.int64), np.arange(12).reshape(1, 12) % 6, start=0)
    np.testing.assert_array_equal(rs.W, before)


def _kernel():
    return kernel_for("latency", "if", "multiplicative", "stack")


def test_pooling_passes_each_windows_earliest_spike():
    T = 9
    tin = np.array([[0, 5, 9],
                     [3, 9, 2],
                     [9, 9, 9]], np.int32).ravel()
    # 3x3 -> 2x2 with a window of 2, stride 2, pad 1: windows {0}, {5, 9}, {3, 9}, {9, 2, 9, 9}.
    g = np.zeros(14, np.int64)
    g[[1, 2, 3, 4, 5, 6, 7, 8, 9]] = [1, 3, 3, 1, 2, 2, 2, 2, 1]
    out = np.zeros(4, np.int32)
    _kernel().pool_layer(tin, out, g, T)
    assert out.tolist() == [0, 5, 3, 2]


def test_pointwise_inhibition_keeps_the_earliest_then_largest_then_lowest_map():
    T = 9
    # 3 maps x 3 places (map-major): place 0 ties at step 1 (potentials 2.0 vs 3.0: map 2),
    # place 1 ties at step 4 with equal potentials (map 0), place 2: map 1 alone.
    times = np.array([1, 4, 9,
                      2, 9, 5,
                      1, 4, 9], np.int32)
    vals = np.array([2.0, 1.0, 0, 1.0, 0, 1.0, 3.0, 1.0, 0], np.float32)
    fired = np.array([7, 6, 0, 1, 3, 5])  # in any order
    best = np.full(3, -1, np.int64)
    cand = np.zeros(3, np.int64)
    nc = _kernel().earliest_per_place(fired, 6, times, vals, 3, best, cand)
    assert sorted(cand[:nc].tolist()) == [1, 5, 6] and (best == -1).all()
    spikes = np.array([3, 1, 9, 1, 1, 9], np.int32)  # a wave: 2 maps x 3 places
    _kernel().pointwise(spikes, 2, 3, T)
    assert spikes.tolist() == [9, 1, 9, 1, 9, 9]


def test_k_winners_earliest_first_and_their_radius():
    T = 9
    # 2 maps on a 1x5 row (map-major): map 0 fires first at place 0; it removes map 0
    # and places 0-1 of both maps; next, map 1's earliest left is place 3 (step 2, ahead
    # of place 4 at step 2 with a smaller potential).
    times = np.array([0, 1, 3, 3, 3,
                      1, 1, 9, 2, 2], np.int32)
    vals = np.array([5, 5, 5, 5, 5,
                     9, 9, 0, 4, 3], np.float32)
    cand = np.array([9, 8, 6, 5, 4, 3, 2, 1, 0])  # every unit that fired, any order
    out = np.zeros(3, np.int64)

    def winners(times, vals, cand, F, w, kwta, radius):
        n = _kernel().k_winners(times, vals, cand, len(cand), F, 1, w, kwta, radius, T,
                                out, np.zeros(F, np.bool_), np.zeros(w, np.bool_))
        return out[:n].tolist()

    assert winners(times, vals, cand, 2, 5, 3, 1) == [0, 8]
    pot = torch.zeros(T, 2, 1, 5, dtype=torch.float64)
    for j, (t, v) in enumerate(zip(times, vals)):
        if t < T:
            pot[t:, j // 5, 0, j % 5] = float(v)
    assert stack_torch.k_winners(pot, 3, 1) == [(0, 0, 0), (1, 0, 3)]
    # Equal step and potential: the lower index, whatever the candidates' order.
    assert winners(np.array([2, 2], np.int32), np.array([5, 5], np.float32),
                   np.array([1, 0]), 1, 2, 1, 0) == [0]


def test_layers_validation_names_the_layer_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"^grid: layers\[1\] \(pool\): unknown key "
                                          r"'maps'; allowed: kind, kernel, stride, pad$"):
        parse_layers([{"kind": "conv", "maps": 2}, {"kind": "pool", "maps": 2}], "grid")
    with pytest.raises(ConfigError, match=r"layers\[0\]: 'kind' = 'local' is not allowed; "
                                          r"allowed: conv, pool"):
        parse_layers([{"kind": "local"}], "grid")
    with pytest.raises(ConfigError, match=r"'threshold' = -1.0 must be at least 0.0"):
        check_value("layers", [{"kind": "conv", "threshold": -1.0}], "grid [settings]")
    spec = check_value("layers", [{"kind": "conv", "maps": 2, "inhibit_input": True}], "g")
    assert spec == "conv(maps=2,inhibit_input=true)"
    assert stack_layers(spec)[0].inhibit_input is True
    assert parse_layers(spec, "g") == spec  # the canonical form reads back as itself


def test_stack_cell_checks(tmp_path):
    from stdp_bench.cell_checks import check_cell

    with pytest.raises(ConfigError, match=r"epochs = 1: a stack trains its conv layers one "
                                          r"after the other for their own epochs, 2 in all; "
                                          r"set epochs = 2"):
        check_cell(_cell().with_settings(epochs=1), "cell")
    with pytest.raises(ConfigError, match=r"neuron = 'lif' is not available for "
                                          r"architecture = 'stack'"):
        check_cell(_cell().with_settings(neuron="lif"), "cell")


def test_geometry_of_kheradpishehs_stack():
    spec = parse_layers("conv(maps=32,kernel=5,pad=2);pool(kernel=2,stride=2,pad=1);"
                        "conv(maps=150,kernel=2,pad=1);pool(kernel=2,stride=2,pad=1)", "g")
    geo, off, thr, nw = stack_geometry(stack_layers(spec), (2, 28, 28))
    # 28x28 -> 32 maps of 28x28 -> 15x15 -> 150 maps of 16x16 -> 9x9: 12,150 features.
    assert np.diff(off).tolist() == [1568, 32 * 28 * 28, 32 * 15 * 15, 150 * 16 * 16,
                                     150 * 9 * 9]
    assert nw == 2 * 25 * 32 + 32 * 4 * 150


def test_a_unit_fires_when_its_potential_exceeds_the_threshold_not_at_it():
    T = 4
    # One 1x2 field of weights 0.5 over a 1x3 row, threshold 1.0: place 0 gets inputs at
    # steps 0 and 1 (potential exactly 1.0: silent), place 1 gets 0.5 at step 1, then
    # 0.5 + 0.75 at step 2.
    g = np.zeros(16, np.int64)
    g[[1, 2, 3, 4, 5, 6, 7, 8]] = [1, 1, 3, 1, 1, 2, 2, 1]  # C H W F h w k s
    g[7] = 2
    Wm = np.array([[0.5], [0.5]], np.float32)
    Wm2 = np.array([[0.75], [0.5]], np.float32)
    tin = np.array([0, 1, 2], np.int32)
    out = np.zeros(2, np.int32)
    vout = np.zeros(2, np.float32)
    args = (np.zeros(2, np.float32), np.zeros(2, np.bool_), np.zeros(2, np.bool_),
            np.zeros(2, np.int64), np.zeros(T + 1, np.int64), np.zeros(3, np.int64))
    ops = np.zeros(1, np.int64)
    flist = np.zeros(2, np.int64)
    assert _kernel().conv_layer(tin, out, vout, g, Wm, np.float32(1.0), T, *args, ops,
                                flist) == 0
    assert out.tolist() == [T, T]
    assert ops[0] == 4  # the inputs' fan-outs: 1 + 2 + 1 places of 1 map
    assert _kernel().conv_layer(tin, out, vout, g, Wm2, np.float32(1.0), T, *args, ops,
                                flist) == 2
    assert out.tolist() == [1, 2] and vout.tolist() == [1.25, 1.25]
    assert flist.tolist() == [0, 1]  # in the order they fired
