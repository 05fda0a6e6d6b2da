"""Readouts: turn frozen-network spike responses into class predictions.

Label-by-response readouts use BindsNET's ``evaluation`` module (``assign_labels``,
``all_activity``, ``proportion_weighting``). Neurons that never fired on the labelling
set get no label (-1), and a test sample with no vote is predicted -1, which counts as
wrong: silent cells score 0, not the frequency of class 0. The n-gram readout follows
BindsNET's ``update_ngram_scores`` / ``ngram`` on spike-event lists with dense score
arrays (BindsNET's versions loop over every time step of a dense raster and over the
product of co-firing neurons, too slow for grids), and abstains likewise.
The ``linear`` readout is a logistic regression on spike counts; the opt-in ``svm``
readout a linear SVM on them (pooled per map when the cell pools), as Kheradpisheh et al.
(2018) classify their last conv layer's pooled features.
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
from sklearn.svm import LinearSVC

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.engine.responses import ReplicaResponses
from stdp_bench.levels import registry
from stdp_bench.levels.spec import Level
from stdp_bench.seeding import global_rngs_seeded

# liblinear's iteration cap for the SVM readout: its dual solver (chosen when a cell has
# more neurons than labelling samples) can need thousands of passes on standardised
# counts; a fit that still stops short keeps its last iterate, as fit_linear's does.
SVM_MAX_ITER = 10_000

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


Params = dict[str, np.ndarray]


def fit_linear(counts: np.ndarray, y: np.ndarray, seed: int = 0) -> Params:
    """Logistic regression on standardised spike counts: the scaler's and the model's
    numbers (``classes`` is empty when the labels hold one class: nothing to fit)."""
    return _fit_scaled(LogisticRegression(max_iter=500, C=1.0, random_state=seed), counts, y)


def _fit_scaled(model, x: np.ndarray, y: np.ndarray) -> Params:
    """``model`` (a linear classifier) fitted on standardised ``x``: the scaler's and the
    model's numbers as plain arrays (model files keep them with allow_pickle=False), which
    :func:`apply_linear` predicts with; only ``classes``, empty, for one class."""
    if len(np.unique(y)) < 2:
        return {"classes": np.zeros(0, np.int64)}
    pipe = make_pipeline(StandardScaler(), model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(x.astype(np.float64), y)
    scaler, fitted = pipe[0], pipe[1]
    return {"mean": scaler.mean_, "scale": scaler.scale_, "coef": fitted.coef_,
            "intercept": fitted.intercept_, "classes": fitted.classes_.astype(np.int64)}


def apply_linear(params: Params, counts: np.ndarray) -> np.ndarray:
    """Classes of ``counts`` by :func:`fit_linear`'s numbers, computed as scikit-learn's
    pipeline computes them (so a saved probe predicts exactly what the fitted one did)."""
    classes = params["classes"]
    if len(classes) < 2:
        return np.full(len(counts), -1, dtype=np.int64)
    x = counts.astype(np.float64)
    x -= params["mean"]
    x /= params["scale"]
    scores = x @ params["coef"].T + params["intercept"]
    picks = (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(1)
    return classes[picks]


def linear_probe(train_counts: np.ndarray, train_y: np.ndarray, test_counts: np.ndarray,
                 seed: int = 0) -> np.ndarray:
    """Logistic regression on standardised spike counts, fitted on the labelling set."""
    return apply_linear(fit_linear(train_counts, train_y, seed), test_counts)


def fit_svm(features: np.ndarray, y: np.ndarray, c: float, seed: int = 0,
            standardize: bool = True) -> Params:
    """Linear SVM (scikit-learn's ``LinearSVC``, squared hinge, one-vs-rest) of penalty
    ``c`` on standardised features (or, ``standardize`` off, on the features as they are,
    as Kheradpisheh et al. fit their binary ones): the scaler's and the model's numbers, in
    :func:`fit_linear`'s form, so :func:`apply_linear` predicts with them (``classes`` is
    empty when the labels hold one class: nothing to fit).

    >>> x = np.array([[0, 5], [1, 4], [6, 0], [5, 1]])
    >>> params = fit_svm(x, np.array([0, 0, 1, 1]), 1.0)
    >>> sorted(params), apply_linear(params, np.array([[0, 6], [7, 1]])).tolist()
    (['classes', 'coef', 'intercept', 'mean', 'scale'], [0, 1])
    >>> fit_svm(x, np.zeros(4, int), 1.0)["classes"].size
    0
    """
    # dual="auto" (scikit-learn >= 1.3) picks the primal solver when samples outnumber
    # features and the dual one otherwise, without the FutureWarning of the old default.
    model = LinearSVC(C=c, dual="auto", max_iter=SVM_MAX_ITER, random_state=seed)
    if standardize:
        return _fit_scaled(model, features, y)
    return _fit_raw(model, features, y)


def _fit_raw(model, x: np.ndarray, y: np.ndarray) -> Params:
    """``model`` fitted on ``x`` as it is, handed over as a sparse matrix (a trained
    stack's binary features are about 90% zeros; standardised they would be dense, 8
    bytes an entry), in
    :func:`_fit_scaled`'s form with mean 0 and scale 1."""
    from scipy import sparse

    if len(np.unique(y)) < 2:
        return {"classes": np.zeros(0, np.int64)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(sparse.csr_matrix(x, dtype=np.float64), y)
    n = x.shape[1]
    return {"mean": np.zeros(n), "scale": np.ones(n), "coef": model.coef_,
            "intercept": model.intercept_, "classes": model.classes_.astype(np.int64)}


def svm_features(resp: ReplicaResponses, pool: int) -> np.ndarray:
    """What the SVM readout reads: spike counts summed over ``pool x pool`` blocks of
    places per feature map when the cell pools and its responses are maps, else the
    counts as they are (a dense layer has no places to pool).

    >>> resp = ReplicaResponses(np.arange(8).reshape(1, 8), np.zeros((1, 0, 2)),
    ...                         np.zeros(1), (2, 2, 2))
    >>> svm_features(resp, 2).tolist(), svm_features(resp, 1).shape
    ([[6.0, 22.0]], (1, 8))
    """
    if pool > 1 and resp.shape is not None:
        return _pooled(resp, pool)
    return resp.counts


def _labels(label_counts: np.ndarray, label_y: np.ndarray, n_classes: int, seed: int
            ) -> Params:
    with global_rngs_seeded(seed):  # assign_labels breaks ties with torch noise
        assignments, proportions, _ = assign_labels(_as_raster(label_counts),
                                                    torch.as_tensor(label_y), n_classes)
    return {"assignments": assignments.numpy(), "proportions": proportions.numpy()}


class Readout:
    """A readout level's predictor: ``fit`` on the labelling responses ``fit`` (None for
    a readout of an output layer) and their classes returns the numbers it learned (a
    model file keeps them), or None when it does not apply to the cell; ``apply`` turns
    test responses into classes, -1 where it abstains."""

    def fit(self, fit: ReplicaResponses | None, fit_y: np.ndarray | None, n_classes: int,
            cfg: CellConfig) -> Params | None:
        raise NotImplementedError

    def apply(self, params: Params, test: ReplicaResponses, n_classes: int,
              cfg: CellConfig) -> np.ndarray:
        raise NotImplementedError


class AllActivity(Readout):
    """BindsNET's all-activity vote of the labelled neurons."""

    def fit(self, fit, fit_y, n_classes, cfg):
        return _labels(fit.counts, fit_y, n_classes, cfg.seed)

    def apply(self, params, test, n_classes, cfg):
        return all_activity(_as_raster(test.counts), torch.as_tensor(params["assignments"]),
                            n_classes).numpy()


class ProportionWeighting(AllActivity):
    """BindsNET's vote weighted by each neuron's class proportions."""

    def apply(self, params, test, n_classes, cfg):
        return proportion_weighting(_as_raster(test.counts),
                                    torch.as_tensor(params["assignments"]),
                                    torch.as_tensor(params["proportions"]), n_classes).numpy()


class NGram(Readout):
    """n-grams of the firing order; does not apply when its dense score array would
    exceed ``NGRAM_MAX_CELLS``. The scores are kept sparse (most n-grams never occur)."""

    def fit(self, fit, fit_y, n_classes, cfg):
        n_neurons = fit.counts.shape[1]
        if n_neurons ** cfg.ngram_n * n_classes > NGRAM_MAX_CELLS:
            return None
        scores = ngram_scores(fit.events, fit.n_events, fit_y, n_classes, cfg.ngram_n,
                              n_neurons)
        where = np.nonzero(scores)
        return {"shape": np.array(scores.shape, np.int64),
                "index": np.stack(where).astype(np.int64), "value": scores[where]}

    def apply(self, params, test, n_classes, cfg):
        scores = np.zeros(tuple(params["shape"]))
        scores[tuple(params["index"])] = params["value"]
        return ngram_predict(test.events, test.n_events, scores, n_classes, cfg.ngram_n)


class Linear(Readout):
    """Logistic regression on spike counts."""

    def fit(self, fit, fit_y, n_classes, cfg):
        return fit_linear(fit.counts, fit_y, cfg.seed)

    def apply(self, params, test, n_classes, cfg):
        return apply_linear(params, test.counts)


def _per_map(resp: ReplicaResponses) -> np.ndarray:
    F, H, W = resp.shape
    return resp.counts.reshape(len(resp.counts), F, H * W).sum(2)


class FilterProportion(Readout):
    """BindsNET's label assignment and proportion weighting on each feature map's spikes
    summed over places."""

    def fit(self, fit, fit_y, n_classes, cfg):
        return _labels(_per_map(fit), fit_y, n_classes, cfg.seed)

    def apply(self, params, test, n_classes, cfg):
        return proportion_weighting(_as_raster(_per_map(test)),
                                    torch.as_tensor(params["assignments"]),
                                    torch.as_tensor(params["proportions"]),
                                    n_classes).numpy().astype(np.int64)


def _pooled(resp: ReplicaResponses, pool: int) -> np.ndarray:
    F, H, W = resp.shape
    t = torch.as_tensor(resp.counts, dtype=torch.float32).view(len(resp.counts), F, H, W)
    return (torch.nn.functional.avg_pool2d(t, pool, ceil_mode=True) * pool * pool
            ).flatten(1).numpy()


class LinearPooled(Readout):
    """The linear probe on counts summed over ``pool x pool`` blocks of places, per map;
    does not apply when ``pool`` is 1 (it would be the linear readout)."""

    def fit(self, fit, fit_y, n_classes, cfg):
        if cfg.pool <= 1:
            return None
        return fit_linear(_pooled(fit, cfg.pool), fit_y, cfg.seed)

    def apply(self, params, test, n_classes, cfg):
        return apply_linear(params, _pooled(test, cfg.pool))


class LinearSVM(Readout):
    """The linear SVM readout on :func:`svm_features`; opt-in: does not apply while the
    cell's ``svm_c`` is 0 (its default), so existing grids gain no rows or minutes."""

    def fit(self, fit, fit_y, n_classes, cfg):
        if cfg.svm_c == 0:
            return None
        return fit_svm(svm_features(fit, cfg.pool), fit_y, cfg.svm_c, cfg.seed,
                       cfg.svm_standardize)

    def apply(self, params, test, n_classes, cfg):
        # LinearSVC predicts as LogisticRegression does (argmax of X @ coef.T + intercept;
        # the sign of the one column for two classes), so apply_linear reproduces it.
        return apply_linear(params, svm_features(test, cfg.pool))


class Decision(Readout):
    """The class a stack's decision layer chose (its first spike decides; -1, an
    abstention, where it stayed silent): no classifier is fit. Does not apply to a
    stack without a decision layer.

    >>> test = ReplicaResponses(np.zeros((3, 1)), np.zeros((3, 0, 2)), np.zeros(3),
    ...                         decisions=np.array([2, -1, 0]))
    >>> params = Decision().fit(test, None, 3, None)
    >>> Decision().apply(params, test, 3, None).tolist()
    [2, -1, 0]
    >>> Decision().fit(ReplicaResponses(np.zeros((3, 1)), np.zeros((3, 0, 2)),
    ...                                 np.zeros(3)), None, 3, None) is None
    True
    """

    def fit(self, fit, fit_y, n_classes, cfg):
        return None if fit is None or fit.decisions is None else {}

    def apply(self, params, test, n_classes, cfg):
        return np.asarray(test.decisions, np.int64)


class Output(Readout):
    """The class of the largest output (a gradient-trained network's own decision)."""

    def fit(self, fit, fit_y, n_classes, cfg):
        return {}

    def apply(self, params, test, n_classes, cfg):
        return test.outputs.argmax(1)


# The predictors the readout levels name (stdp_bench/levels/readouts.py).
all_activity_readout = AllActivity()
proportion_weighting_readout = ProportionWeighting()
ngram_readout = NGram()
linear_readout = Linear()
filter_proportion_readout = FilterProportion()
linear_pooled_readout = LinearPooled()
svm_readout = LinearSVM()
output_readout = Output()
decision_readout = Decision()


def readout_levels(family: str, provides: tuple[str, ...]) -> list[Level]:
    """The readout levels that score a cell of ``family`` whose engine fills the response
    kinds ``provides`` (plugins included).

    >>> [lv.name for lv in readout_levels("stdp", ("counts", "events"))]
    ['all_activity', 'proportion_weighting', 'ngram', 'linear', 'svm']
    """
    return [lv for lv in registry.levels("readout")
            if family in lv.families and set(lv.reads) <= set(provides)]


def predictor(level: Level) -> Readout:
    """The readout level's predictor."""
    found = registry.load_ref(level.predictor, f"readout {level.name!r} predictor")
    if not (hasattr(found, "fit") and hasattr(found, "apply")):
        raise ConfigError(f"readout {level.name!r}: predictor {level.predictor!r} has no "
                          "fit and apply (stdp_bench.readout.Readout)")
    return found


def fit_readouts(levels: list[Level], fit: ReplicaResponses | None,
                 fit_y: np.ndarray | None, n_classes: int, cfg: CellConfig
                 ) -> dict[str, Params]:
    """What every readout of ``levels`` learns on the labelling responses; readouts that
    do not apply to this cell are left out."""
    fitted = {}
    for level in levels:
        params = predictor(level).fit(fit, fit_y, n_classes, cfg)
        if params is not None:
            fitted[level.name] = params
    return fitted


def apply_readouts(fitted: dict[str, Params], test: ReplicaResponses, n_classes: int,
                   cfg: CellConfig) -> dict[str, np.ndarray]:
    """Every fitted readout's classes for the test responses."""
    return {name: np.asarray(predictor(registry.get("readout", name)).apply(
                params, test, n_classes, cfg), dtype=np.int64)
            for name, params in fitted.items()}


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts (true x predicted); abstentions (-1) are left out of the matrix."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = pred >= 0
    np.add.at(m, (y[ok], pred[ok]), 1)
    return m
