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
