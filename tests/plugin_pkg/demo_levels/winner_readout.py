"""A plugin readout: the class of the single most active neuron (winner takes all)."""

import numpy as np

from stdp_bench.levels.spec import Level

LEVEL = Level(axis="readout", name="winner_neuron", module=__name__, families=("stdp",),
              predictor=f"{__name__}:predict", reads=("counts",),
              doc="class of the most active neuron, labelled by its mean response (demo)")


def predict(fit, fit_y, test, n_classes, cfg):
    """Label each neuron with the class it answers most, then let the test sample's most
    active neuron decide (-1 when nothing fired)."""
    means = np.stack([fit.counts[fit_y == c].mean(0) if (fit_y == c).any()
                      else np.zeros(fit.counts.shape[1]) for c in range(n_classes)])
    labels = means.argmax(0)
    winner = test.counts.argmax(1)
    return np.where(test.counts.max(1) > 0, labels[winner], -1)
