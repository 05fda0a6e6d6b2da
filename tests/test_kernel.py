"""The fused kernel on its own: encoders, pair STDP, the teacher, replica independence.

Parity with stock BindsNET as a whole is tests/test_parity.py; the tests here pin single
behaviours on hand-made inputs, and check that a replica's trajectory depends on nothing
but its own configuration (not on which other cells share the run, their order, or the
chunking).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bindsnet.encoding import rank_order as stock_rank_order
from sklearn.datasets import load_digits

from stdp_bench.config import CellConfig
from stdp_bench.encoders import rank_order_fixed
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.kernel_engine import ReplicaSet
from stdp_bench.levels import random
from stdp_bench.replica_params import auto_gain, replica_params


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def encode(x: np.ndarray, enc: str, T: int, rate_hz: float = 128.0, dt: float = 1.0,
           seed: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """The composed kernel's ``gen_events`` for one image: (ptr, idx, spike count)."""
    n = x.shape[0]
    ev_t = np.empty(n * T + 1, np.int32)
    ev_i = np.empty(n * T + 1, np.int32)
    ptr = np.empty(T + 1, np.int64)
    idx = np.empty(n * T + 1, np.int32)
    state = np.array([seed], np.uint64)
    m = kernel_for(enc, "if", "none").gen_events(x, rate_hz, T, dt, state, ev_t, ev_i,
                                                 ptr, idx)
    return ptr, idx[:m], m


def dense(ptr: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Events -> [T, n] uint8 raster; checks the documented bucket layout on the way."""
    T = ptr.shape[0] - 1
    assert ptr[0] == 0 and ptr[T] == idx.shape[0] and np.all(np.diff(ptr) >= 0)
    out = np.zeros((T, n), np.uint8)
    for t in range(T):
        step = idx[ptr[t]:ptr[t + 1]]
        assert np.all(np.diff(step) > 0), "indices within a step must increase"
        out[t, step] = 1
    return out


def to_events(raster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, n] raster -> (ptr, idx) in the kernel's event format."""
    s = raster.astype(bool)
    ptr = np.zeros(s.shape[0] + 1, np.int64)
    ptr[1:] = np.cumsum(s.sum(1))
    idx = np.nonzero(s)[1].astype(np.int32)
    return ptr, (idx if idx.size else np.zeros(1, np.int32))


def run_present(W, theta, cfg: CellConfig, raster: np.ndarray, learning: bool = True,
                label: int = 0, n_classes: int = 10):
    """One ``present`` call (no normalisation); returns the [T, n] spike raster."""
    params = replica_params([cfg], [1.0], n_classes)
    ptr, idx = to_events(raster)
    T, n = raster.shape[0], W.shape[1]
    counts = np.zeros(n, np.int64)
    ev_buf = np.zeros((T * n, 2), np.int32)
    n_ev = np.zeros(1, np.int64)
    kernel_for(cfg.encoder, cfg.neuron, cfg.rule).present(
                   W, theta, params.network[0], params.neurons[0][0], params.rules[0][0],
                   ptr, idx, T, learning, learning, label,
                   np.array([3], np.uint64), counts, ev_buf, n_ev, np.array([False]),
                   np.zeros(1000, np.int64), np.zeros(1, np.int64))
    out = np.zeros((T, n), bool)
    out[ev_buf[: n_ev[0], 0], ev_buf[: n_ev[0], 1]] = True
    return out


# ----------------------------------------------------------------------------- STDP


def test_pair_stdp_potentiates_pre_before_post_and_depresses_post_before_pre():
    """Input 1 fires 4 steps before the excitatory spike, input 2 two steps after it.

    Input 0 (weight 20 mV) fires at step 5 and makes the single LIF neuron spike at step 6
    (currents arrive one step later). PostPre: at the post spike every weight gains
    ``nu_post * x_pre`` (input 1's trace has decayed for 4 steps); when input 2 fires
    after it, it loses ``nu_pre * x_post`` (the post trace has decayed for 2 steps).
    Input 3 never fires and must not change. Checked before any normalisation.
    """
    cfg = CellConfig(neuron="lif", rule="stdp", n_neurons=1, time=12, nu_pre=1e-2,
                     nu_post=1e-2, wmin=0.0, wmax=100.0, norm=1000.0)
    T = 12
    raster = np.zeros((T, 4), np.uint8)
    raster[2, 1] = 1  # pre ...
    raster[5, 0] = 1  # ... driver ...
    raster[8, 2] = 1  # ... post spike at 6, then this pre
    W = np.array([[20.0], [0.5], [0.5], [0.5]], np.float32)
    theta = np.zeros(1, np.float32)
    spikes = run_present(W, theta, cfg, raster)
    assert spikes[:, 0].nonzero()[0].tolist() == [6]

    d = np.float32(math.exp(-1.0 / cfg.tc_trace_ms))
    potentiated = np.float32(0.5) + np.float32(cfg.nu_post) * d ** 4
    depressed = np.float32(0.5) - np.float32(cfg.nu_pre) * d ** 2
    assert W[1, 0] > 0.5 and W[1, 0] == pytest.approx(potentiated, rel=1e-6)
    assert W[2, 0] < 0.5 and W[2, 0] == pytest.approx(depressed, rel=1e-6)
    assert W[0, 0] == pytest.approx(20.0 + cfg.nu_post * d, rel=1e-6)
    assert W[3, 0] == np.float32(0.5)

    # Same train with learning off: no weight moves.
    W2 = np.array([[20.0], [0.5], [0.5], [0.5]], np.float32)
    run_present(W2, theta, cfg, raster, learning=False)
    assert np.array_equal(W2, np.array([[20.0], [0.5], [0.5], [0.5]], np.float32))


# ---------------------------------------------------------------------------- teacher


def test_teacher_drives_and_gates_the_labelled_class(digits):
    """With weak inhibition other classes spike too, but only the label's columns learn.

    Also: the drive is what makes the labelled neurons fire more than under plain STDP
    on the same input, and learning off means no drive at all (the kernel's spikes then
    equal the plain STDP network's with learning off).
    """
    x, _ = digits
    n, label, T = 20, 3, 100
    cfg = CellConfig(neuron="lif", rule="teacher", n_neurons=n, time=T, inh=2.0,
                     intensity_hz=256.0, teacher_drive_mv=1.0, nu_pre=2e-3, nu_post=1e-2)
    gen = torch.Generator().manual_seed(5)
    p = torch.from_numpy(x[0]) * (cfg.intensity_hz / 1000.0)
    raster = torch.bernoulli(p.expand(T, -1), generator=gen).numpy().astype(np.uint8)
    W0 = np.random.default_rng(0).uniform(0, 0.6, (64, n)).astype(np.float32)
    cls = np.arange(n) % 10 == label

    W = W0.copy()
    spikes = run_present(W, np.zeros(n, np.float32), cfg, raster, label=label)
    assert spikes[:, ~cls].sum() >= 5, "other classes must spike for the gate to matter"
    assert spikes[:, cls].sum() >= 5
    assert np.array_equal(W[:, ~cls], W0[:, ~cls]), "other classes' columns learned"
    assert not np.array_equal(W[:, cls], W0[:, cls])

    W_stdp = W0.copy()
    plain = run_present(W_stdp, np.zeros(n, np.float32), cfg.with_settings(rule="stdp"),
                        raster, label=label)
    assert spikes[:, cls].sum() > plain[:, cls].sum()
    assert not np.array_equal(W_stdp[:, ~cls], W0[:, ~cls])  # ungated STDP moves them

    frozen_t = run_present(W0.copy(), np.zeros(n, np.float32), cfg, raster, False, label)
    frozen_s = run_present(W0.copy(), np.zeros(n, np.float32),
                           cfg.with_settings(rule="stdp"), raster, False, label)
    assert np.array_equal(frozen_t, frozen_s)


# --------------------------------------------------------------------------- encoders


def test_rank_order_events_equal_rank_order_fixed(digits):
    x, _ = digits
    rng = np.random.default_rng(0)
    rand = rng.random((4, 64)).astype(np.float32) * (rng.random((4, 64)) > 0.3)
    images = list(x[:20]) + list(rand) + [np.zeros(64, np.float32),
                                          np.full(64, 0.5, np.float32)]
    for T in (25, 50, 100):
        for img in images:
            ptr, idx, m = encode(img, "rank_order", T)
            ours = dense(ptr, idx, 64)
            ref = rank_order_fixed(torch.from_numpy(img.copy()), time=T).numpy()
            assert np.array_equal(ours, ref)
            assert m == int((img > 0).sum())  # one spike per nonzero pixel, none dropped


@pytest.mark.parametrize("enc", ["poisson", "bernoulli"])
def test_rate_encoders_hit_the_requested_rate_and_leave_x_alone(enc):
    T, rate = 20000, 128.0
    levels = np.array([0.25, 0.5, 0.75, 1.0], np.float32)
    x = np.concatenate([np.repeat(levels, 4), np.zeros(2, np.float32)])
    x_before = x.copy()
    ptr, idx, m = encode(x, enc, T, rate_hz=rate, seed=11)
    assert np.array_equal(x, x_before)
    raster = dense(ptr, idx, x.shape[0])
    assert raster.sum() == m
    assert raster[:, x == 0].sum() == 0
    rates = raster.sum(0) / (T / 1000.0)  # Hz per input
    for level in levels:
        measured = rates[x == level].mean()
        assert measured == pytest.approx(level * rate, rel=0.03), (level, measured)


@pytest.mark.parametrize("lam", [1e-3, 0.5, 1.0, 3.90625, 9.999, 10.0, 15.6862745, 255.0,
                                 1e5])
def test_prepared_poisson_draws_are_the_draws_of_poisson(lam):
    """The Poisson encoder prepares a pixel's lam once (poisson_prepare) and then draws
    with poisson_walk / poisson_ptrs: the same numbers as poisson, from the same stream."""
    table = np.zeros(random.POISSON_TABLE)
    n = random.poisson_prepare(lam, table)
    assert (n == 0) == (lam >= 10.0)
    ours, ref = np.array([7], np.uint64), np.array([7], np.uint64)
    with np.errstate(over="ignore"):
        for _ in range(300):
            k = (random.poisson_walk(ours, table, n) if n else
                 random.poisson_ptrs(ours, *table[:6]))
            assert k == random.poisson(ref, lam)
    assert ours[0] == ref[0]


def test_poisson_walk_gives_up_where_poisson_does():
    # Above every entry of the CDF, poisson's walk stops after k = 1000.
    with np.errstate(over="ignore"):
        assert random.poisson_walk(np.array([1], np.uint64), np.zeros(4), 4) == 1001


def test_bernoulli_saturates_at_one_spike_per_step():
    x = np.array([1.0, 0.0], np.float32)
    ptr, idx, m = encode(x, "bernoulli", 50, rate_hz=2000.0)
    assert m == 50 and np.array_equal(dense(ptr, idx, 2)[:, 0], np.ones(50, np.uint8))


def test_stock_rank_order_drops_the_dimmest_pixel_and_ours_does_not():
    """Documents two BindsNET 0.3.4 ``rank_order`` defects that ``encoders`` fixes.

    Stock spike times are ``ceil(T * (1/x) / max(1/x))``, so the dimmest nonzero pixel
    lands exactly on T and is then dropped by the ``times < time`` filter; and the input
    is divided by its maximum in place. Ours (dense and kernel) keep that pixel on the
    last step and leave the input untouched.
    """
    T = 10
    x = torch.tensor([0.8, 0.4, 0.2, 0.0])
    x_stock = x.clone()
    stock = stock_rank_order(x_stock, time=T)
    assert stock.sum(0).tolist() == [1, 1, 0, 0]  # the 0.2 pixel never fires
    assert not torch.equal(x_stock, x)  # ... and the caller's tensor was rescaled

    x_ours = x.clone()
    ours = rank_order_fixed(x_ours, time=T)
    assert ours.sum(0).tolist() == [1, 1, 1, 0]
    assert ours[T - 1, 2] == 1
    assert torch.equal(x_ours, x)
    # Brighter pixels fire at the same steps as in stock.
    assert torch.equal(ours[:, :2], stock[:, :2])
    ptr, idx, _ = encode(x.numpy(), "rank_order", T)
    assert np.array_equal(dense(ptr, idx, 4), ours.numpy())


# ------------------------------------------------------------------------ replicas


CELLS = [
    CellConfig(dataset="digits", n_neurons=10, time=50, encoder="poisson", neuron="adaptive",
               rule="stdp", norm=16.0, min_spikes=2),
    CellConfig(dataset="digits", n_neurons=10, time=50, encoder="bernoulli", neuron="lif",
               rule="weight_dependent", norm=16.0, seed=1),
    CellConfig(dataset="digits", n_neurons=10, time=50, encoder="rank_order", neuron="if",
               rule="hebbian", norm=16.0),
]


def _run_group(cells: list[CellConfig], x: np.ndarray, y: np.ndarray, chunk: int):
    """Train then respond; each cell's sample order depends on the cell alone."""
    gains = [auto_gain(c.encoder, x, c.intensity_hz, c.time) for c in cells]
    rs = ReplicaSet(cells, n_input=x.shape[1], gains=gains)
    orders = np.stack([np.random.default_rng(CELLS.index(c)).permutation(60)[:40]
                       for c in cells])
    stats = rs.train(x[:60], y[:60], orders, phase=0, chunk=chunk)
    test_orders = np.tile(np.arange(30), (len(cells), 1))
    resp = rs.respond(x[60:90], test_orders, phase=1, chunk=chunk)
    return rs, stats, resp


@pytest.mark.slow
def test_replicas_are_independent_of_grouping_order_and_chunking(digits):
    x, y = digits
    groups = {
        "all": ([0, 1, 2], 100),
        "permuted": ([2, 0, 1], 7),
        "one removed": ([2, 0], 13),
    }
    results = {name: (members, _run_group([CELLS[i] for i in members], x, y, chunk))
               for name, (members, chunk) in groups.items()}
    ref_members, (ref_rs, ref_stats, ref_resp) = results["all"]
    assert ref_stats.diverged_at.sum() == 0
    assert (ref_resp.counts.sum(axis=(1, 2)) > 0).all(), "every cell must respond"
    assert (ref_stats.exc_spikes.sum(1) > 0).all()
    for name, (members, (rs, stats, resp)) in results.items():
        for r, cell in enumerate(members):
            q = ref_members.index(cell)
            assert np.array_equal(rs.W[r], ref_rs.W[q]), (name, cell)
            assert np.array_equal(rs.theta[r], ref_rs.theta[q]), (name, cell)
            assert np.array_equal(stats.exc_spikes[r], ref_stats.exc_spikes[q]), (name, cell)
            assert np.array_equal(stats.retries[r], ref_stats.retries[q]), (name, cell)
            assert np.array_equal(resp.counts[r], ref_resp.counts[q]), (name, cell)
            assert np.array_equal(resp.events[r], ref_resp.events[q]), (name, cell)
    # The cells really are different networks.
    assert not np.array_equal(ref_rs.W[0], ref_rs.W[1])
