"""Thresholds set from the weights at the freeze (the ``threshold_calibration`` setting).

Why: a Diehl & Cook neuron's drive from an image is ``x . w_j`` (weights normalised to a
fixed *sum*), and it fires first when that drive is large against the distance from rest
to its threshold, ``thresh - rest + theta_j``. Unsupervised STDP's thresholds grow, in
free competition, until each neuron wins its share; on the workbench's trained networks
``thresh - rest + theta_j`` then tracks the L2 norm of ``w_j`` (correlation 0.97-0.99 at
100 and 400 neurons, 0.995 at 1,600), so the first neuron to fire is close to the one
whose weights point most nearly the image's way (cosine similarity). A teacher that
blocks the other classes lets thresholds compete only inside a class, and that relation
breaks across classes (0.93-0.98): its weights are good class prototypes (nearest by
cosine: 91.9 / 94.7 / 95.8% at 100 / 400 / 1,600 neurons) that its spiking competition
reads at 87.9 / 91.8 / 91.0%. ``benchmarks/teacher_thresholds.py`` measures these; README:
"Thresholds set from the weights".

``weight_norm`` sets the relation outright: ``thresh - rest + theta_j = kappa ||w_j||``,
with ``kappa`` keeping the network's mean distance to threshold (so the network fires
about as much as before). It has no free parameter.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from stdp_bench.config import SETTINGS, CellConfig

__all__ = ["CALIBRATIONS", "calibrated_state", "weight_norm_thresholds"]


def weight_norm_thresholds(W: np.ndarray, theta: np.ndarray, gap_mv: float) -> np.ndarray:
    """Adaptive thresholds ``theta'`` with ``gap_mv + theta'_j`` proportional to the L2
    norm of column j of ``W`` (``[n_input, n]``) and the same mean as ``gap_mv + theta``;
    ``gap_mv`` is the distance from rest to the base threshold (``thresh_mv - rest_mv``).

    ``theta'`` is floored at 0, where an adaptive threshold starts: a column with little
    or no weight would otherwise get a threshold at or below rest (and reset), and fire
    on every step. On the workbench's trained networks the floor never binds (the
    smallest calibrated distance is 22 mV, against 13).

    >>> W = np.array([[3.0, 1.0], [4.0, 3.0]])  # norms 5 and 3.16
    >>> weight_norm_thresholds(W, np.array([10.0, 2.0]), 13.0)  # mean distance 19 kept
    array([10.2778163,  1.7221837])
    >>> weight_norm_thresholds(np.array([[3.0, 0.0], [4.0, 0.0]]), np.zeros(2), 13.0)
    array([13.,  0.])
    """
    norms = np.linalg.norm(np.asarray(W, np.float64), axis=0)
    mean_gap = float(np.mean(gap_mv + np.asarray(theta, np.float64)))
    scale = mean_gap / norms.mean() if norms.mean() > 0 else 0.0
    return np.maximum(scale * norms - gap_mv, 0.0).astype(np.asarray(theta).dtype)


def calibrated_state(state: dict[str, np.ndarray], cfgs: Sequence[CellConfig]
                     ) -> dict[str, np.ndarray]:
    """A replica engine's ``state`` (``W [R, n_input, n]``, ``theta [R, n]``) with the
    thresholds of each replica whose config asks (``threshold_calibration``) set from its
    weights; the other arrays, and the other replicas' thresholds, as they were.

    >>> state = {"W": np.array([[[3.0, 1.0], [4.0, 3.0]]]), "theta": np.array([[10.0, 2.0]])}
    >>> cfg = CellConfig(threshold_calibration="weight_norm")
    >>> calibrated_state(state, [cfg])["theta"]
    array([[10.2778163,  1.7221837]])
    >>> calibrated_state(state, [CellConfig()])["theta"]
    array([[10.,  2.]])
    """
    theta = np.array(state["theta"], copy=True)
    for r, cfg in enumerate(cfgs):
        name = SETTINGS["threshold_calibration"].check(cfg.threshold_calibration,
                                                       f"replica {r}")
        if name != "none":
            theta[r] = CALIBRATIONS[name](state["W"][r], theta[r],
                                          cfg.thresh_mv - cfg.rest_mv)
    return {**state, "theta": theta}


#: What each ``threshold_calibration`` value other than "none" does (the setting's
#: declared choices; tests/test_threshold_calibration.py holds the two equal).
CALIBRATIONS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "weight_norm": weight_norm_thresholds}
