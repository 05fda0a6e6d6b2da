"""Readouts on synthetic spike counts and events."""

import numpy as np
import torch
from bindsnet.evaluation import ngram as stock_ngram
from bindsnet.evaluation import update_ngram_scores

from stdp_bench.config import CellConfig
from stdp_bench.engine.responses import ReplicaResponses
from stdp_bench.readout import (apply_readouts, confusion, fit_readouts, ngram_predict,
                                ngram_scores, readout_levels)


def predict_all(fit_counts, fit_y, fit_ev, fit_nev, counts, ev, nev, *, n_classes, ngram_n,
                seed):
    """Every spike-count and event readout, fitted on one set and predicting another."""
    cfg = CellConfig(ngram_n=ngram_n, seed=seed)
    fitted = fit_readouts(readout_levels("stdp", ("counts", "events")),
                          ReplicaResponses(fit_counts, fit_ev, fit_nev), fit_y, n_classes, cfg)
    return apply_readouts(fitted, ReplicaResponses(counts, ev, nev), n_classes, cfg)


def synthetic(n_per_class=20, n_classes=3, n=6, seed=0):
    """Neuron 2c and 2c+1 respond to class c; neuron index 5 never fires."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    counts = rng.poisson(0.2, size=(len(y), n))
    for k, c in enumerate(y):
        counts[k, 2 * c] += 5
        counts[k, 2 * c + 1] += 3 if c < 2 else 0
    counts[:, 5] = 0
    events = np.zeros((len(y), 64, 2), np.int32)
    n_events = np.zeros(len(y), np.int64)
    for k in range(len(y)):
        seq = [(t, j) for t, j in enumerate(np.repeat(np.arange(n), counts[k]))]
        events[k, :len(seq)] = seq
        n_events[k] = len(seq)
    return counts, y, events, n_events


def test_readouts_classify_synthetic_responses():
    counts, y, ev, nev = synthetic()
    preds = predict_all(counts, y, ev, nev, counts, ev, nev, n_classes=3, ngram_n=2, seed=0)
    for name, p in preds.items():
        assert (p == y).mean() > 0.9, name


def test_silent_samples_and_neurons_do_not_vote_for_class_zero():
    counts, y, ev, nev = synthetic()
    silent = np.zeros_like(counts)
    zero_ev = np.zeros(len(y), np.int64)
    preds = predict_all(counts, y, ev, nev, silent, ev, zero_ev, n_classes=3, ngram_n=2, seed=0)
    for name in ("all_activity", "proportion_weighting", "ngram"):
        assert (preds[name] == -1).all(), name
    m = confusion(y, preds["all_activity"], 3)
    assert m.sum() == 0


def test_ngram_matches_bindsnet_on_random_rasters():
    rng = np.random.default_rng(1)
    n_samples, T, n = 12, 15, 5
    raster = (rng.random((n_samples, T, n)) < 0.15)
    labels = rng.integers(0, 3, n_samples)
    events = np.zeros((n_samples, T * n, 2), np.int32)
    n_events = np.zeros(n_samples, np.int64)
    for k in range(n_samples):
        ts, js = np.nonzero(raster[k])
        events[k, :len(ts)] = np.stack([ts, js], 1)
        n_events[k] = len(ts)
    ours = ngram_scores(events, n_events, labels, 3, 2, n)
    stock = update_ngram_scores(torch.tensor(raster), torch.tensor(labels), 3, 2, {})
    assert (ours.sum(-1) > 0).sum() == len(stock)
    for key, value in stock.items():
        assert np.array_equal(ours[key], value.numpy())
    pred = ngram_predict(events, n_events, ours, 3, 2)
    ref = stock_ngram(torch.tensor(raster), stock, 3, 2).numpy()
    seen = pred >= 0  # ours abstains where BindsNET would default to class 0
    assert np.array_equal(pred[seen], ref[seen])


def test_a_saved_linear_probe_predicts_what_scikit_learn_predicts():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from stdp_bench.readout import apply_linear, fit_linear

    rng = np.random.default_rng(3)
    for classes in (2, 4):
        y = rng.integers(0, classes, 120)
        x = rng.poisson(1.0, (120, 7)) + y[:, None] * (np.arange(7) % 2)
        test = rng.poisson(1.0, (80, 7)) + rng.integers(0, classes, 80)[:, None]
        sk = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=0))
        expected = sk.fit(x.astype(np.float64), y).predict(test.astype(np.float64))
        np.testing.assert_array_equal(apply_linear(fit_linear(x, y, 0), test), expected)
    assert (apply_linear(fit_linear(x, np.zeros(120, int), 0), test) == -1).all()


def svm_cells(c, seed=0, pool=1):
    """The svm readout level alone, and a cell with its penalty ``c``."""
    from stdp_bench.levels import registry

    return [registry.get("readout", "svm")], CellConfig().with_settings(svm_c=c, seed=seed,
                                                                        pool=pool)


def digits_counts(seed=0):
    """scikit-learn's digits as Poisson spike counts of 100 random-ish neurons (each fires
    at the rectified sum of a random signed weighting of the pixels), split 1000 / rest."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.maximum(x @ rng.normal(size=(64, 100)), 0.0) / 10.0)
    return counts[:1000], y[:1000], counts[1000:], y[1000:]


def sklearn_svm(c, seed):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from stdp_bench.readout import SVM_MAX_ITER

    return make_pipeline(StandardScaler(), LinearSVC(C=c, dual="auto", max_iter=SVM_MAX_ITER,
                                                     random_state=seed))


def test_svm_readout_is_off_at_svm_c_zero():
    from stdp_bench.readout import svm_readout

    counts, y, _, _ = synthetic()
    levels, cfg = svm_cells(0.0)
    assert cfg.svm_c == 0.0 and cfg.level_settings == ()
    fit = ReplicaResponses(counts, np.zeros((len(y), 0, 2), np.int32), np.zeros(len(y)))
    assert svm_readout.fit(fit, y, 3, cfg) is None
    assert fit_readouts(levels, fit, y, 3, cfg) == {}
    # Every readout of a counts-and-events cell, as a default cell is scored: no svm.
    assert "svm" not in predict_all(counts, y, *synthetic()[2:], counts, *synthetic()[2:],
                                    n_classes=3, ngram_n=2, seed=0)


def test_svm_readout_on_digits_counts_predicts_what_scikit_learn_predicts():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    fit_x, fit_y, test_x, test_y = digits_counts()
    levels, cfg = svm_cells(0.01, seed=5)
    empty = np.zeros((len(fit_x), 0, 2), np.int32)
    fitted = fit_readouts(levels, ReplicaResponses(fit_x, empty, np.zeros(len(fit_x))),
                          fit_y, 10, cfg)
    params = fitted["svm"]
    # Model files keep the numbers with allow_pickle=False: plain numeric arrays only.
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in params.values())
    assert params["coef"].shape == (10, 100)
    test = ReplicaResponses(test_x, empty[:len(test_x)], np.zeros(len(test_x)))
    pred = apply_readouts(fitted, test, 10, cfg)["svm"]
    assert (pred == test_y).mean() > 0.6  # chance is 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = sklearn_svm(0.01, 5).fit(fit_x.astype(np.float64), fit_y)
    np.testing.assert_array_equal(pred, sk.predict(test_x.astype(np.float64)))


def test_svm_readout_pools_maps_and_reads_dense_counts_as_they_are():
    from stdp_bench.readout import fit_svm, svm_features

    rng = np.random.default_rng(2)
    F, H, W = 3, 4, 4
    y = rng.integers(0, 3, 90)
    counts = rng.poisson(0.3, (90, F, H, W))
    counts[np.arange(90), y] += rng.poisson(2.0, (90, H, W))  # map y answers
    counts = counts.reshape(90, -1)
    empty = np.zeros((90, 0, 2), np.int32)
    maps = ReplicaResponses(counts, empty, np.zeros(90), (F, H, W))
    levels, cfg = svm_cells(1.0, pool=2)
    pooled = counts.reshape(90, F, 2, 2, 2, 2).sum((3, 5)).reshape(90, -1)
    np.testing.assert_array_equal(svm_features(maps, 2), pooled)
    fitted = fit_readouts(levels, maps, y, 3, cfg)
    np.testing.assert_array_equal(fitted["svm"]["coef"], fit_svm(pooled, y, 1.0)["coef"])
    assert (apply_readouts(fitted, maps, 3, cfg)["svm"] == y).mean() > 0.9
    # A dense layer (no map shape) has no places: pool leaves its counts alone.
    dense = ReplicaResponses(counts, empty, np.zeros(90))
    assert svm_features(dense, 2) is counts
    assert fit_readouts(levels, dense, y, 3, cfg)["svm"]["coef"].shape == (3, F * H * W)


def test_svm_readout_on_two_classes_and_on_one_behaves_like_the_linear_probe():
    from stdp_bench.readout import apply_linear, fit_linear, fit_svm

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    x = rng.poisson(1.0, (120, 7)) + y[:, None] * (np.arange(7) % 2)
    test = rng.poisson(1.0, (80, 7)) + rng.integers(0, 2, 80)[:, None]
    params = fit_svm(x, y, 0.5, 0)
    assert params["coef"].shape == fit_linear(x, y, 0)["coef"].shape == (1, 7)
    expected = sklearn_svm(0.5, 0).fit(x.astype(np.float64), y).predict(test.astype(np.float64))
    np.testing.assert_array_equal(apply_linear(params, test), expected)
    assert set(np.unique(expected)) == {0, 1}
    # One class: nothing to fit, every sample abstains (-1), as the linear probe does.
    one = np.full(120, 3)
    assert fit_svm(x, one, 0.5)["classes"].size == fit_linear(x, one)["classes"].size == 0
    levels, cfg = svm_cells(0.5)
    empty = np.zeros((120, 0, 2), np.int32)
    fitted = fit_readouts(levels, ReplicaResponses(x, empty, np.zeros(120)), one, 4, cfg)
    tested = ReplicaResponses(test, empty[:80], np.zeros(80))
    assert (apply_readouts(fitted, tested, 4, cfg)["svm"] == -1).all()
    assert (apply_linear(fit_linear(x, one), test) == -1).all()
