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
from typing import Callable

import numpy as np
import torch
from bindsnet.evaluation import all_activity, assign_labels, proportion_weighting
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stdp_bench.config import CellConfig
from stdp_bench.engine.responses import ReplicaResponses
from stdp_bench.levels import registry
from stdp_bench.levels.spec import Level
from stdp_bench.seeding import global_rngs_seeded

Predictor = Callable[[ReplicaResponses | None, np.ndarray | None, ReplicaResponses, int,
                      CellConfig], np.ndarray | None]
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


# Predictors of the readout levels (stdp_bench/levels/readouts.py names them). Each fits
# on the labelling responses ``fit`` (None for readouts of an output layer) with their
# labels ``fit_y`` and predicts the test responses; -1 is an abstention, and None means
# the readout does not apply to this cell (its accuracy is left out).

def all_activity_readout(fit: ReplicaResponses, fit_y: np.ndarray, test: ReplicaResponses,
                         n_classes: int, cfg: CellConfig) -> np.ndarray:
    """BindsNET's all-activity vote of the labelled neurons."""
    assignments, _, _ = _labels(fit.counts, fit_y, n_classes, cfg.seed)
    return all_activity(_as_raster(test.counts), assignments, n_classes).numpy()


def proportion_weighting_readout(fit: ReplicaResponses, fit_y: np.ndarray,
                                 test: ReplicaResponses, n_classes: int, cfg: CellConfig
                                 ) -> np.ndarray:
    """BindsNET's vote weighted by each neuron's class proportions."""
    assignments, proportions, _ = _labels(fit.counts, fit_y, n_classes, cfg.seed)
    return proportion_weighting(_as_raster(test.counts), assignments, proportions,
                                n_classes).numpy()


def ngram_readout(fit: ReplicaResponses, fit_y: np.ndarray, test: ReplicaResponses,
                  n_classes: int, cfg: CellConfig) -> np.ndarray | None:
    """n-grams of the firing order; None when the score array would exceed
    ``NGRAM_MAX_CELLS``."""
    n_neurons = fit.counts.shape[1]
    if n_neurons ** cfg.ngram_n * n_classes > NGRAM_MAX_CELLS:
        return None
    scores = ngram_scores(fit.events, fit.n_events, fit_y, n_classes, cfg.ngram_n, n_neurons)
    return ngram_predict(test.events, test.n_events, scores, n_classes, cfg.ngram_n)


def linear_readout(fit: ReplicaResponses, fit_y: np.ndarray, test: ReplicaResponses,
                   n_classes: int, cfg: CellConfig) -> np.ndarray:
    """Logistic regression on spike counts."""
    return linear_probe(fit.counts, fit_y, test.counts, cfg.seed)


def _per_map(resp: ReplicaResponses) -> np.ndarray:
    F, H, W = resp.shape
    return resp.counts.reshape(len(resp.counts), F, H * W).sum(2)


def filter_proportion_readout(fit: ReplicaResponses, fit_y: np.ndarray,
                              test: ReplicaResponses, n_classes: int, cfg: CellConfig
                              ) -> np.ndarray:
    """BindsNET's label assignment and proportion weighting on each feature map's spikes
    summed over places."""
    with global_rngs_seeded(cfg.seed):  # assign_labels breaks ties with torch noise
        assignments, proportions, _ = assign_labels(_as_raster(_per_map(fit)),
                                                    torch.as_tensor(fit_y), n_classes)
    return proportion_weighting(_as_raster(_per_map(test)), assignments, proportions,
                                n_classes).numpy().astype(np.int64)


def linear_pooled_readout(fit: ReplicaResponses, fit_y: np.ndarray, test: ReplicaResponses,
                          n_classes: int, cfg: CellConfig) -> np.ndarray | None:
    """The linear probe on counts summed over ``pool x pool`` blocks of places, per map;
    None when ``pool`` is 1 (it would be the linear readout)."""
    if cfg.pool <= 1:
        return None
    F, H, W = fit.shape
    pool = cfg.pool

    def pooled(c: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(c, dtype=torch.float32).view(len(c), F, H, W)
        return (torch.nn.functional.avg_pool2d(t, pool, ceil_mode=True) * pool * pool
                ).flatten(1).numpy()

    return linear_probe(pooled(fit.counts), fit_y, pooled(test.counts), cfg.seed)


def output_readout(fit: ReplicaResponses | None, fit_y: np.ndarray | None,
                   test: ReplicaResponses, n_classes: int, cfg: CellConfig) -> np.ndarray:
    """The class of the largest output (a gradient-trained network's own decision)."""
    return test.outputs.argmax(1)


def readout_levels(family: str, provides: tuple[str, ...]) -> list[Level]:
    """The readout levels that score a cell of ``family`` whose engine fills the response
    kinds ``provides`` (plugins included).

    >>> [lv.name for lv in readout_levels("stdp", ("counts", "events"))]
    ['all_activity', 'proportion_weighting', 'ngram', 'linear']
    """
    return [lv for lv in registry.levels("readout")
            if family in lv.families and set(lv.reads) <= set(provides)]


def predictor(level: Level) -> Predictor:
    """The readout level's predictor function."""
    return registry.load_ref(level.predictor, f"readout {level.name!r} predictor")


def predict(levels: list[Level], fit: ReplicaResponses | None, fit_y: np.ndarray | None,
            test: ReplicaResponses, n_classes: int, cfg: CellConfig
            ) -> dict[str, np.ndarray]:
    """Every readout of ``levels`` fitted on ``fit`` and predicting ``test``; readouts that
    do not apply (their predictor returned None) are left out."""
    preds = {}
    for level in levels:
        pred = predictor(level)(fit, fit_y, test, n_classes, cfg)
        if pred is not None:
            preds[level.name] = np.asarray(pred, dtype=np.int64)
    return preds


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts (true x predicted); abstentions (-1) are left out of the matrix."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = pred >= 0
    np.add.at(m, (y[ok], pred[ok]), 1)
    return m
