"""A plugin readout: the class of the single most active neuron (winner takes all)."""

import numpy as np

from stdp_bench.levels.spec import Level
from stdp_bench.readout import Readout

LEVEL = Level(axis="readout", name="winner_neuron", module=__name__, families=("stdp",),
              predictor=f"{__name__}:WINNER", reads=("counts",),
              doc="class of the most active neuron, labelled by its mean response (demo)")


class WinnerNeuron(Readout):
    """Label each neuron with the class it answers most (``fit``: what a model file
    keeps), then let the test sample's most active neuron decide (-1 when none fired)."""

    def fit(self, fit, fit_y, n_classes, cfg):
        means = np.stack([fit.counts[fit_y == c].mean(0) if (fit_y == c).any()
                          else np.zeros(fit.counts.shape[1]) for c in range(n_classes)])
        return {"labels": means.argmax(0)}

    def apply(self, params, test, n_classes, cfg):
        winner = test.counts.argmax(1)
        return np.where(test.counts.max(1) > 0, params["labels"][winner], -1)


WINNER = WinnerNeuron()
