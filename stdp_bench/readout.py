"""Readouts: turn frozen-network spike responses into class predictions.

Label-by-response readouts use BindsNET's ``evaluation`` module (``assign_labels``,
``all_activity``, ``proportion_weighting``). Neurons that never fired on the labelling
set get no label (-1), and a test sample with no vote is predicted -1, which counts as
wrong: silent cells score 0, not the frequency of class 0. The n-gram readout follows
BindsNET's ``update_ngram_scores`` / ``ngram`` on spike-event lists with dense score
arrays (BindsNET's versions loop over every time step of a dense raster and over the
product of co-firing neurons, too slow for grids), and abstains likewise.
The ``linear`` readout is a logistic regression on spike counts.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from bindsnet.evaluation import all_activity, assign_labels, proportion_weighting
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stdp_bench.levels import registry
from stdp_bench.seeding import global_rngs_seeded

READOUTS = registry.names("readout")
# Extra readouts of conv / local cells (per filter; pooled linear probe when pool > 1).
FEATURE_READOUTS = ("filter_proportion", "linear_pooled")
# The dense n-gram score array holds n_neurons ** n x n_classes numbers; above this the
# readout is skipped (its accuracy is left empty) rather than exhausting memory.
NGRAM_MAX_CELLS = 50_000_000


def _as_raster(counts: np.ndarray) -> torch.Tensor:
    # BindsNET's evaluation functions sum over a time axis; counts are that sum.
    return torch.as_tensor(counts, dtype=torch.float32).unsqueeze(1)


def fire_groups(events: np.ndarray, n_events: int) -> list[list[int]]:
    """Neurons firing at each time step that has spikes, in step order (index-sorted)."""
    ev = events[: min(n_events, len(events))]
    groups: list[list[int]] = []
    last_t = None
    for t, j in ev:
        if t != last_t:
            groups.append([])
            last_t = t
        groups[-1].append(int(j))
    for g in groups:
        g.sort()
    return groups


def ngram_scores(events: np.ndarray, n_events: np.ndarray, labels: np.ndarray,
                 n_classes: int, n: int, n_neurons: int) -> np.ndarray:
    """Per-class counts of each length-n sequence of firing groups (BindsNET semantics).

    Dense: entry ``[a, b, ..., c]`` counts the windows of n consecutive firing groups
    containing a in the first group, b in the second, ... for samples of class c. This is
    BindsNET's ``update_ngram_scores`` (a dict over ``itertools.product`` of the groups),
    as one einsum per sample: cells where many neurons fire together make the product
    explode, the einsum does not. The einsum runs over the neurons that fired in the
    sample only (its entries are whole counts, so the result is the same), which keeps
    it cheap in networks of thousands of neurons.
    """
    scores = np.zeros((n_neurons,) * n + (n_classes,))
    letters = "abcdefgh"[:n]
    spec = ",".join(f"k{c}" for c in letters) + "->" + letters
    for k in range(len(labels)):
        groups = fire_groups(events[k], int(n_events[k]))
        if len(groups) < n:
            continue
        fired = np.unique(np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]))
        onehot = np.zeros((len(groups), len(fired)))
        for g, members in enumerate(groups):
            onehot[g, np.searchsorted(fired, members)] = 1.0
        windows = [onehot[i:len(groups) - n + 1 + i] for i in range(n)]
        scores[np.ix_(*([fired] * n), [int(labels[k])])] += np.einsum(spec, *windows)[..., None]
    return scores


def ngram_predict(events: np.ndarray, n_events: np.ndarray, scores: np.ndarray,
                  n_classes: int, n: int) -> np.ndarray:
    """Class with the highest summed n-gram score; -1 where no n-gram was seen."""
    preds = np.full(len(n_events), -1, dtype=np.int64)
    for k in range(len(n_events)):
        order = np.array([j for g in fire_groups(events[k], int(n_events[k])) for j in g],
                         dtype=np.int64)
        # BindsNET's loop bound (len - n) is kept so the two agree.
        m = len(order) - n
        if m <= 0:
            continue
        score = scores[tuple(order[i:i + m] for i in range(n))].sum(0)
        if score.any():
            preds[k] = int(np.argmax(score))
    return preds


def linear_probe(train_counts: np.ndarray, train_y: np.ndarray, test_counts: np.ndarray,
                 seed: int = 0) -> np.ndarray:
    """Logistic regression on standardised spike counts, fitted on the labelling set."""
    if len(np.unique(train_y)) < 2:
        return np.full(len(test_counts), -1, dtype=np.int64)
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=500, C=1.0, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_counts.astype(np.float64), train_y)
    return model.predict(test_counts.astype(np.float64)).astype(np.int64)


def _labels(label_counts: np.ndarray, label_y: np.ndarray, n_classes: int, seed: int):
    with global_rngs_seeded(seed):  # assign_labels breaks ties with torch noise
        return assign_labels(_as_raster(label_counts), torch.as_tensor(label_y), n_classes)


def _all_activity(label_counts, label_y, label_events, label_n_events, test_counts,
                  test_events, test_n_events, n_classes, ngram_n, seed):
    assignments, _, _ = _labels(label_counts, label_y, n_classes, seed)
    return all_activity(_as_raster(test_counts), assignments, n_classes).numpy()


def _proportion_weighting(label_counts, label_y, label_events, label_n_events, test_counts,
                          test_events, test_n_events, n_classes, ngram_n, seed):
    assignments, proportions, _ = _labels(label_counts, label_y, n_classes, seed)
    return proportion_weighting(_as_raster(test_counts), assignments, proportions,
                                n_classes).numpy()


def _ngram(label_counts, label_y, label_events, label_n_events, test_counts, test_events,
           test_n_events, n_classes, ngram_n, seed):
    if label_counts.shape[1] ** ngram_n * n_classes > NGRAM_MAX_CELLS:
        return None
    scores = ngram_scores(label_events, label_n_events, label_y, n_classes, ngram_n,
                          label_counts.shape[1])
    return ngram_predict(test_events, test_n_events, scores, n_classes, ngram_n)


def _linear(label_counts, label_y, label_events, label_n_events, test_counts, test_events,
            test_n_events, n_classes, ngram_n, seed):
    return linear_probe(label_counts, label_y, test_counts, seed)


# One predictor per level of the readout axis (stdp_bench/levels/readouts.py).
PREDICTORS = {"all_activity": _all_activity, "proportion_weighting": _proportion_weighting,
              "ngram": _ngram, "linear": _linear}


def predict_readout(name: str, label_counts: np.ndarray, label_y: np.ndarray,
                    label_events: np.ndarray, label_n_events: np.ndarray,
                    test_counts: np.ndarray, test_events: np.ndarray,
                    test_n_events: np.ndarray, n_classes: int, ngram_n: int, seed: int
                    ) -> np.ndarray | None:
    """One readout fitted on the labelling responses, predicting the test responses.

    None for ``ngram`` when its dense score array would exceed ``NGRAM_MAX_CELLS``.
    """
    predictor = PREDICTORS.get(name)
    if predictor is None:
        raise ValueError(f"unknown readout '{name}'; allowed: {', '.join(READOUTS)}")
    pred = predictor(label_counts, label_y, label_events, label_n_events, test_counts,
                     test_events, test_n_events, n_classes, ngram_n, seed)
    return None if pred is None else np.asarray(pred, dtype=np.int64)


def predict_all(label_counts: np.ndarray, label_y: np.ndarray, label_events: np.ndarray,
                label_n_events: np.ndarray, test_counts: np.ndarray,
                test_events: np.ndarray, test_n_events: np.ndarray, n_classes: int,
                ngram_n: int, seed: int) -> dict[str, np.ndarray]:
    """Fit every readout on the labelling responses and predict the test responses."""
    preds = {name: predict_readout(name, label_counts, label_y, label_events,
                                   label_n_events, test_counts, test_events, test_n_events,
                                   n_classes, ngram_n, seed)
             for name in READOUTS}
    return {k: v for k, v in preds.items() if v is not None}


def feature_predictions(label_counts: np.ndarray, label_y: np.ndarray,
                        test_counts: np.ndarray, shape: tuple[int, int, int], pool: int,
                        n_classes: int, seed: int) -> dict[str, np.ndarray]:
    """Readouts of feature maps ``shape = (F, H, W)`` (counts are ``[N, F * H * W]``).

    ``filter_proportion``: BindsNET's label assignment and proportion weighting on each
    filter's spikes summed over locations. ``linear_pooled`` (``pool > 1``): the linear
    probe on counts summed over ``pool x pool`` blocks of locations, per filter.
    """
    F, H, W = shape
    lab = label_counts.reshape(len(label_counts), F, H * W).sum(2)
    tst = test_counts.reshape(len(test_counts), F, H * W).sum(2)
    with global_rngs_seeded(seed):  # assign_labels breaks ties with torch noise
        assignments, proportions, _ = assign_labels(_as_raster(lab),
                                                    torch.as_tensor(label_y), n_classes)
    out = {"filter_proportion": proportion_weighting(
        _as_raster(tst), assignments, proportions, n_classes).numpy().astype(np.int64)}
    if pool > 1:
        def pooled(c: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(c, dtype=torch.float32).view(len(c), F, H, W)
            return (torch.nn.functional.avg_pool2d(t, pool, ceil_mode=True) * pool * pool
                    ).flatten(1).numpy()
        out["linear_pooled"] = linear_probe(pooled(label_counts), label_y,
                                            pooled(test_counts), seed)
    return out


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts (true x predicted); abstentions (-1) are left out of the matrix."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = pred >= 0
    np.add.at(m, (y[ok], pred[ok]), 1)
    return m
