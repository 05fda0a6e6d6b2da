"""The ``latency`` encoder (SpykeTorch's Intensity2Latency): golden events, the composed
kernel, and its invariants on scikit-learn's digits."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn.datasets import load_digits

from stdp_bench.levels import registry
from stdp_bench.levels.encoders import latency, rank_order

from test_kernel import dense, encode

MODULE = "stdp_bench.levels.encoders.latency"


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits().data / 16.0).astype(np.float32)


def steps_of(x: np.ndarray, T: int) -> np.ndarray:
    """Each input's step from ``kernel_encode`` run as Python (-1: never fires)."""
    n = x.shape[0]
    ev_t, ev_i = np.full(n + 1, -7, np.int32), np.full(n + 1, -7, np.int32)
    m = latency.kernel_encode(x, 0.0, T, 1.0, None, ev_t, ev_i)
    out = np.full(n, -1, np.int64)
    assert len(set(ev_i[:m].tolist())) == m, "an input fired twice"
    out[ev_i[:m]] = ev_t[:m]
    return out


def raster_of(x: np.ndarray, T: int) -> np.ndarray:
    """[T, n] raster from the dense kernel composed for latency (test_kernel's helpers,
    which check the bucket layout on the way)."""
    ptr, idx, _ = encode(x, "latency", T)
    return dense(ptr, idx, x.shape[0])


def spyketorch_steps(x: np.ndarray, T: int) -> np.ndarray:
    """Steps as SpykeTorch's Intensity2Latency bins them, written from its description
    (ties taken in index order, which its unstable torch.sort does not promise).

    Bin size ``n // T``; rank k goes to bin ``k // (n // T)`` for the first T bins; the
    ``n % T`` dimmest nonzero inputs are left out (-1). SpykeTorch fails for n < T.
    """
    nz = np.flatnonzero(x > 0)
    b = nz.size // T
    assert b > 0, "SpykeTorch's split needs at least T nonzero inputs"
    ranked = nz[np.argsort(-x[nz], kind="stable")]
    out = np.full(x.shape[0], -1, np.int64)
    for k, i in enumerate(ranked[: T * b]):
        out[i] = k // b
    return out


# A small vector with zeros, a three-way tie at 1.0 and a tie at 0.5: 7 nonzero inputs.
# Ranked (largest first, ties by lower index): 2, 4, 8 (1.0), 7 (0.75), 1, 6 (0.5), 3.
GOLDEN_X = np.array([0.0, 0.5, 1.0, 0.25, 1.0, 0.0, 0.5, 0.75, 1.0], np.float32)
# Input -> step (-1: never fires), by hand from floor(k T / n), k the rank, n = 7.
GOLDEN = {
    # k = 0..6 -> 0 0 0 1 1 2 2: 3, 2, 2 spikes; the one extra spike (7 = 3 * 2 + 1)
    # lands on step 0. The tie at 0.5 is split: input 1 on step 1, input 6 on step 2.
    3: [-1, 1, 0, 2, 0, -1, 2, 1, 0],
    # k = 0..6 -> 0 0 1 2 2 3 4: 2, 1, 2, 1, 1 spikes; the two extras (7 = 5 + 2) go to
    # steps 0 and 2, spread over the window rather than stacked at either end.
    5: [-1, 2, 0, 4, 0, -1, 3, 2, 1],
    # T = n: one spike per step, in rank order.
    7: [-1, 4, 0, 6, 1, -1, 5, 3, 2],
    # T > n (SpykeTorch fails here): k -> floor(10 k / 7) = 0 1 2 4 5 7 8.
    10: [-1, 5, 0, 8, 1, -1, 7, 4, 2],
}


@pytest.mark.parametrize("T", sorted(GOLDEN))
def test_golden_events(T):
    want = np.array(GOLDEN[T])
    assert np.array_equal(steps_of(GOLDEN_X, T), want)
    # The compiled kernel gives the same events, bucketed by step.
    raster = raster_of(GOLDEN_X, T)
    expect = np.zeros((T, 9), np.uint8)
    fired = want >= 0
    expect[want[fired], np.flatnonzero(fired)] = 1
    assert np.array_equal(raster, expect)


def test_golden_against_spyketorch_binning():
    """T = 3, n = 7: SpykeTorch's bins hold 7 // 3 = 2 ranks each and drop rank 6
    (input 3); ours add that one spike, and no input fires later than there."""
    ours, theirs = steps_of(GOLDEN_X, 3), spyketorch_steps(GOLDEN_X, 3)
    assert theirs.tolist() == [-1, 2, 0, -1, 0, -1, 2, 1, 1]
    placed = theirs >= 0
    assert np.all(ours[placed] <= theirs[placed])
    assert ours[3] == 2  # the input SpykeTorch leaves out fires on the last step


def test_zeros_and_empty_images_never_fire():
    for x in (np.zeros(16, np.float32), np.array([0.0, -0.5, 0.0], np.float32)):
        assert np.all(steps_of(x, 5) == -1)
        assert raster_of(x, 5).sum() == 0
    # One nonzero input fires on step 0 whatever T is.
    x = np.array([0.0, 0.0, 0.3, 0.0], np.float32)
    assert steps_of(x, 1).tolist() == [-1, -1, 0, -1]
    assert steps_of(x, 50).tolist() == [-1, -1, 0, -1]


def test_equal_values_spread_by_index_not_stacked():
    """Where rank_order puts a tie on one step, latency spreads it over the window."""
    x = np.ones(12, np.float32)
    assert steps_of(x, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    ev_t, ev_i = np.zeros(12, np.int32), np.zeros(12, np.int32)
    m = rank_order.kernel_encode(x, 0.0, 4, 1.0, None, ev_t, ev_i)
    assert set(ev_t[:m].tolist()) == {3}  # rank_order: all twelve on one step


@pytest.mark.parametrize("T", [1, 4, 15, 33, 64, 350])
def test_digits_invariants(T, digits):
    """Every nonzero pixel fires exactly once and zeros never; spikes per step differ by
    at most one; a brighter pixel never fires after a dimmer one; the compiled kernel and
    the Python one agree."""
    for x in digits[:300]:
        raster = raster_of(x, T)
        steps = steps_of(x, T)
        nz = x > 0
        assert np.array_equal(raster.sum(0), nz.astype(np.uint8))
        fired = raster.argmax(0)
        assert np.array_equal(np.where(nz, fired, -1), steps)
        per_step = raster.sum(1)
        assert per_step.max() - per_step.min() <= 1
        assert per_step.sum() == nz.sum()
        # Pairwise: x_i > x_j > 0 implies step_i <= step_j; equal values by index.
        s, v = steps[nz], x[nz]
        assert not np.any((v[:, None] > v[None, :]) & (s[:, None] > s[None, :]))
        order = np.lexsort((np.flatnonzero(nz), -v))  # rank order: value, then index
        assert np.all(np.diff(s[order]) >= 0)


def test_digits_match_spyketorch_when_T_divides_n(digits):
    """When T divides the nonzero count, the steps are SpykeTorch's exactly; otherwise no
    input fires later than SpykeTorch fires it, and only its dropped inputs are added."""
    for x in digits[:200]:
        n = int((x > 0).sum())
        for T in range(1, n + 1):
            ours, theirs = steps_of(x, T), spyketorch_steps(x, T)
            if n % T == 0:
                assert np.array_equal(ours, theirs), (n, T)
            else:
                placed = theirs >= 0
                assert np.all(ours[placed] <= theirs[placed])
                assert int((~placed & (x > 0)).sum()) == n % T


def test_input_gain_is_rank_orders(digits):
    from stdp_bench.replica_params import auto_gain

    assert latency.input_gain is rank_order.input_gain
    gain = auto_gain("latency", digits, 128.0, 350)
    assert gain == auto_gain("rank_order", digits, 128.0, 350) > 1.0
    # The gain gives one spike per nonzero pixel the Poisson code's mean input volume.
    volume = digits.sum(1).mean() * 128.0 * 350 / 1000.0
    assert gain == pytest.approx(volume / (digits > 0).sum(1).mean())


def test_level_and_doctest():
    level = registry.get("encoder", "latency")
    assert level.module == MODULE and level.uses == ("time", "dt", "input_gain")
    result = doctest.testmod(latency, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
