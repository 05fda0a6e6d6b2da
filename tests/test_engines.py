"""Every engine holds to the Engine interface: it is one, and training continued from a
saved state (in a fresh engine) gives what one uninterrupted call gives."""

import re

import numpy as np
import pytest

from stdp_bench.config import CellConfig, make_cell
from stdp_bench.data import load_dataset
from stdp_bench.engine.interface import Engine
from stdp_bench.execution import Execution
from stdp_bench.protocol import Plan

SMALL = dict(dataset="digits", time=20, n_train=24, n_label=30, n_test=30)
CASES = {
    "kernel": ([CellConfig(**SMALL, n_neurons=6, neuron=n) for n in ("lif", "adaptive")],
               Execution()),
    "torch": ([CellConfig(**SMALL, n_neurons=6, neuron=n) for n in ("lif", "adaptive")],
              Execution(engine="torch", pinned=True)),
    "bindsnet-conv": ([CellConfig(**SMALL, architecture="conv", kernel_size=4, stride=2,
                                  n_filters=3, neuron="lif")],
                      Execution(engine="torch", pinned=True)),
    "bindsnet-local": ([CellConfig(**SMALL, architecture="local", kernel_size=4, stride=2,
                                   n_filters=3, neuron="lif")],
                       Execution(engine="torch", pinned=True)),
    # The map kernel: replicas of different levels, first-spike and every-spike (the
    # combinations tests/test_map_parity.py compiles).
    "kernel-conv": ([CellConfig(**SMALL, architecture="conv", kernel_size=4, stride=2,
                                n_filters=3, neuron="adaptive", rule=r,
                                conv_learning="first_spike") for r in ("stdp", "none")],
                    Execution()),
    "kernel-local": ([CellConfig(**SMALL, architecture="local", kernel_size=4, stride=2,
                                 n_filters=3, neuron=n, rule=r)
                      for n, r in (("if", "hebbian"), ("lif", "weight_dependent"))],
                     Execution()),
    # A stack whose schedule moves from its first conv layer to its second at 12.
    "kernel-stack": ([make_cell(dict(SMALL, n_train=12, epochs=2, architecture="stack",
                                     encoder="latency", neuron="if", rule=r, seed=s,
                                     layers="conv(maps=3,kernel=3,threshold=1.0,winners=2);"
                                            "pool(kernel=2);conv(maps=4,kernel=2,"
                                            "threshold=0.8,winners=2)"))
                      for r, s in (("multiplicative", 0), ("multiplicative", 1))],
                     Execution()),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("case", list(CASES))
def test_engine_continues_from_its_state_exactly(case, digits):
    cfgs, execution = CASES[case]
    plan = Plan.of(cfgs, digits)
    whole = plan.build(execution)
    assert isinstance(whole, Engine)
    assert whole.name == case.split("-")[0]
    plan.train(whole, 0, 24)

    first = plan.build(execution)
    plan.train(first, 0, 10)
    state = first.state()
    assert all(len(v) == len(cfgs) for v in state.values()), "replicas on the first axis"
    rest = plan.build(execution)
    rest.load_state(state)
    plan.train(rest, 10, 24)

    for key, value in whole.state().items():
        np.testing.assert_array_equal(value, rest.state()[key], err_msg=key)
    _, a = plan.respond(whole)
    _, b = plan.respond(rest)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert set(whole.arrays(0)) and all(np.isfinite(v).all() for v in whole.arrays(0).values())
    assert {"exc_spikes_per_sample", "silent_fraction", "synops_per_sample"} <= set(
        whole.activity(0, a))


@pytest.mark.parametrize("case", ["kernel", "kernel-conv", "kernel-stack"])
def test_numba_engines_refuse_orders_past_their_samples(case, digits):
    # The numba kernels index X without bounds checks: an order past it would read
    # foreign memory (a segmentation fault took a whole process once) instead of raising.
    cfgs, execution = CASES[case]
    engine = Plan.of(cfgs, digits).build(execution)
    X, Y = digits.x_train[:5], digits.y_train[:5]
    past = np.tile(np.array([0, 5]), (len(cfgs), 1))
    with pytest.raises(IndexError, match=re.escape("orders index samples 0..5, but X holds "
                                                   "5 (0..4)")):
        engine.train(X, Y, past)
    with pytest.raises(IndexError, match=re.escape("orders index samples -1..4")):
        engine.respond(X, past - 1, phase=2)


def test_baseline_engine_is_an_engine_whose_state_reproduces_its_outputs(digits):
    """A baseline trains in one call (not resumable), but its state still reloads: a fresh
    engine given it answers exactly as the trained one."""
    cfg = CellConfig(family="ann", architecture="mlp", dataset="digits", n_neurons=8,
                     n_train=64, n_test=20, batch_size=32)
    plan = Plan.of([cfg], digits)
    trained = plan.build(Execution())
    assert isinstance(trained, Engine) and trained.name == "autograd"
    assert not plan.trainer.resumable and not plan.trainer.labels
    plan.train(trained, 0, 64)
    fresh = plan.build(Execution())
    fresh.load_state(trained.state())
    _, a = plan.respond(trained)
    _, b = plan.respond(fresh)
    assert a.outputs.shape == (1, 20, 10)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    with pytest.raises(ValueError, match="a baseline trains in one call"):
        plan.train(fresh, 10, 20)
