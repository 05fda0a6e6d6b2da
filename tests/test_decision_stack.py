"""Decision layers and R-STDP (Mozafari et al. 2019) in layer stacks: the engine against
SpykeTorch's procedure written out in numpy (decision by the largest final potential,
reward / punishment of the winner's map, the whole-kernel clamp at the first update,
rates adapted per batch), checkpoints inside a batch, kept layer inputs, the decision
readout through the protocol, and the validation messages."""

from __future__ import annotations

import numpy as np
import pytest

from stdp_bench.config import ConfigError, check_value, make_cell
from stdp_bench.engine.stack_engine import StackReplicaSet
from stdp_bench.levels.stack_spec import parse_layers

# One decision layer straight on the 8x8 input: 10 maps of 3x3 (pad 1) over 8x8 places,
# one map per class.
DECIDER = ("conv(maps=10,kernel=3,pad=1,fire_at_end=true,decide=true,rule=rstdp,"
           "winners=1,epochs=3,a_plus=0.05,a_minus_ratio=0.5,wmin=0.2,wmax=0.8)")


def _cell(spec: str = DECIDER, n_train: int = 40, epochs: int = 3, **more):
    settings = dict(dataset="digits", architecture="stack", encoder="latency", neuron="if",
                    rule="multiplicative", time=5, n_train=n_train, epochs=epochs,
                    layers=spec, punish_plus=0.03, punish_minus=0.01, adapt_batch=10)
    return make_cell({**settings, **more})


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(y))[:n]
    return (x[pick] / 16.0).astype(np.float32), y[pick].astype(np.int64)


def _fired(x: np.ndarray) -> np.ndarray:
    """Which inputs a latency code fires at all: every one above zero."""
    return (x > 0).reshape(1, 8, 8)


def _reference(W0: np.ndarray, X: np.ndarray, Y: np.ndarray, order: np.ndarray,
               rates: tuple[float, float, float, float], batch: int,
               bounds: tuple[float, float]) -> tuple[np.ndarray, list[int]]:
    """SpykeTorch's MozafariDeep.py layer 3 on a one-layer stack, in numpy: final
    potentials (threshold None), the largest wins (first in map-major order), its map
    decides (F / 10 maps per class) and learns additively over the winner's field
    (padding never fires), then the whole kernel is clamped; after every ``batch``
    images the reward rates scale by the miss rate, the punishment rates by the hit
    rate."""
    W = W0.copy()  # [F, C, k, k]
    F, C, k, _ = W.shape
    rp, rm, pp, pm = rates
    scale_r = scale_p = 1.0
    hits = misses = 0
    outcomes = []
    for n, i in enumerate(order):
        fired = np.pad(_fired(X[i]), ((0, 0), (1, 1), (1, 1)))
        pot = np.zeros((F, 8, 8), np.float32)
        for oy in range(8):
            for ox in range(8):
                field = fired[:, oy:oy + k, ox:ox + k]
                pot[:, oy, ox] = (W * field).reshape(F, -1).sum(1, dtype=np.float32)
        if pot.max() <= 0:
            outcomes.append(-1)
        else:
            j = int(np.argmax(pot))
            f, place = divmod(j, 64)
            oy, ox = divmod(place, 8)
            field = fired[:, oy:oy + k, ox:ox + k]
            right = f // (F // 10) == Y[i]
            outcomes.append(int(right))
            hits += right
            misses += not right
            if right:
                up, down = np.float32(rp * scale_r), np.float32(-rm * scale_r)
            else:
                up, down = np.float32(-pp * scale_p), np.float32(pm * scale_p)
            W[f] += np.where(field, up, down)
            W = np.clip(W, *bounds) if n == 0 else W
            W[f] = np.clip(W[f], *bounds)
        if (n + 1) % batch == 0:
            scale_r, scale_p = misses / batch, hits / batch
            hits = misses = 0
    return W, outcomes


def test_r_stdp_decision_layer_is_spyketorchs_procedure():
    cfg = _cell()
    X, Y = _data(40)
    rs = StackReplicaSet([cfg], (1, 8, 8))
    W0 = rs.filters(0, 0)
    order = np.concatenate([np.arange(40), np.arange(40)[::-1], np.arange(40)])
    rs.train(X, Y, order[None], start=0)
    want, outcomes = _reference(W0, X, Y, order, (0.05, 0.025, 0.03, 0.01), 10, (0.2, 0.8))
    np.testing.assert_allclose(rs.filters(0, 0), want, rtol=0, atol=2e-6)
    per_epoch = [[outcomes[e * 40:(e + 1) * 40].count(v) for v in (1, 0, -1)]
                 for e in range(3)]
    assert rs.epoch_outcomes[0].tolist() == per_epoch
    assert len(set(outcomes)) >= 2  # both rewards and punishments happened
    # The responses decide as training did (weights frozen: the same winner).
    resp = rs.respond(X, np.arange(40)[None], phase=2)
    _, frozen = _reference(rs.filters(0, 0), X, Y, np.arange(40), (0, 0, 0, 0), 10,
                           (-1e9, 1e9))
    right = resp.decisions[0] == Y
    assert right.astype(int).tolist() == [max(o, 0) for o in frozen]


def test_a_decision_layer_without_a_threshold_fires_everything_positive_at_the_end():
    cfg = _cell()
    X, Y = _data(5)
    rs = StackReplicaSet([cfg], (1, 8, 8))
    resp = rs.respond(X, np.arange(5)[None], phase=2)
    # Initial weights near 0.8: every place any fired input reaches ends positive, and
    # fires on the last step.
    assert set(resp.events[0, :, :resp.n_events[0].min(), 0].ravel()) == {cfg.time - 1}
    assert (resp.n_events[0] > 0).all()


def test_checkpoint_inside_a_batch_resumes_the_same_rates_and_counts():
    cfg = _cell()
    X, Y = _data(40)
    order = np.tile(np.arange(40), 3)[None]
    whole = StackReplicaSet([cfg], (1, 8, 8))
    whole.train(X, Y, order, start=0)
    first = StackReplicaSet([cfg], (1, 8, 8))
    first.train(X, Y, order[:, :57], start=0)
    state = first.state()
    assert state["decision_batch"][0].sum() == 7  # 57 = 5 batches of 10 and 7 more
    resumed = StackReplicaSet([cfg], (1, 8, 8))
    resumed.load_state(state)
    resumed.train(X, Y, order[:, 57:], start=57)
    np.testing.assert_array_equal(resumed.W, whole.W)
    np.testing.assert_array_equal(resumed.epoch_outcomes, whole.epoch_outcomes)
    np.testing.assert_array_equal(resumed.last_rates, whole.last_rates)


def test_kept_layer_inputs_train_as_recomputing_them_does():
    spec = ("conv(maps=4,kernel=3,pad=1,threshold=1.2,winners=2,radius=1,epochs=1);"
            "pool(kernel=2);" + DECIDER.replace("epochs=3", "epochs=2"))
    cfg = _cell(spec, epochs=3)
    X, Y = _data(40)
    order = np.tile(np.arange(40), 3)[None]
    kept = StackReplicaSet([cfg], (1, 8, 8))
    assert kept.cacheable
    kept.train(X, Y, order, start=0)
    again = StackReplicaSet([cfg], (1, 8, 8))
    again.cacheable = False
    again.train(X, Y, order, start=0)
    np.testing.assert_array_equal(kept.W, again.W)
    assert kept._kept is not None and kept._kept[0] == 2  # the decision layer's input
    bernoulli = StackReplicaSet([cfg.with_settings(encoder="bernoulli")], (1, 8, 8))
    assert not bernoulli.cacheable  # random spikes: every epoch draws anew


def test_decision_stack_is_scored_by_its_decision_through_the_protocol():
    from stdp_bench.data import load_dataset
    from stdp_bench.protocol import run_cells

    # 20 maps of one 8x8 field (2 per class): R-STDP learns a vote from the pixels.
    spec = ("conv(maps=20,kernel=8,fire_at_end=true,decide=true,rule=rstdp,winners=1,"
            "epochs=3,a_plus=0.02,a_minus_ratio=0.5,wmin=0.2,wmax=0.8)")
    cfg = _cell(spec, n_train=300, n_label=100, n_test=200, label_source="train", seed=1,
                punish_plus=0.01, punish_minus=0.002, adapt_batch=50)
    outcome, = run_cells([cfg], load_dataset("digits"))
    assert outcome.readouts["decision"].accuracy > 0.4  # ten classes: chance is 0.1
    assert outcome.metrics["train_decision_accuracy"] > 0.4


def test_decision_layer_validation_messages():
    from stdp_bench.cell_checks import check_cell

    with pytest.raises(ConfigError, match=r"^grid: 'rule' = 'rstdp' learns from a stack's "
                                          r"decision layer, so a layer table names it "
                                          r"\(rule = \"rstdp\" with decide = true\), not "
                                          r"a cell$"):
        check_value("rule", "rstdp", "grid")
    with pytest.raises(ConfigError, match=r"^g: layers\[0\] \(conv\): 'decide' = true is "
                                          r"allowed only on the last layer \(layers\[1\]\)$"):
        parse_layers([{"kind": "conv", "decide": True}, {"kind": "pool"}], "g")
    with pytest.raises(ConfigError, match=r"layers\[0\] \(conv\): 'rule' = 'rstdp' learns "
                                          r"from the layer's decisions; set decide = true "
                                          r"on it"):
        check_cell(_cell(DECIDER.replace("decide=true,", "")), "cell")
    with pytest.raises(ConfigError, match=r"layers\[0\] \(conv\): 'maps' = 12 must be a "
                                          r"multiple of the 10 classes of dataset 'digits'"):
        check_cell(_cell(DECIDER.replace("maps=10", "maps=12")), "cell")
    with pytest.raises(ConfigError, match=r"layers\[0\] \(conv\): 'rule' = 'teacher' is "
                                          r"not available in a stack"):
        check_cell(_cell(DECIDER.replace("rule=rstdp", "rule=teacher")), "cell")
    with pytest.raises(ConfigError, match=r"'rule' = 'nosuch' is not allowed; allowed: "):
        check_cell(_cell(DECIDER.replace("rule=rstdp", "rule=nosuch")), "cell")
