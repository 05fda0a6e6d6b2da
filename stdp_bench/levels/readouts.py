"""Levels of the ``readout`` axis: a cell is scored by every readout of its family whose
kinds of response its trainer provides (:mod:`stdp_bench.readout` holds the predictors).

>>> [r.name for r in LEVELS]
['all_activity', 'proportion_weighting', 'ngram', 'linear', 'filter_proportion', 'linear_pooled', 'output']
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

_P = "stdp_bench.readout"
LEVELS = (
    Level(axis="readout", name="all_activity", module=__name__, families=("stdp",),
          predictor=f"{_P}:all_activity_readout", reads=("counts",), listed=True,
          doc="class with the highest mean count of its labelled neurons (BindsNET)"),
    Level(axis="readout", name="proportion_weighting", module=__name__, families=("stdp",),
          predictor=f"{_P}:proportion_weighting_readout", reads=("counts",), listed=True,
          doc="counts weighted by each neuron's class proportions (BindsNET)"),
    Level(axis="readout", name="ngram", module=__name__, uses=("ngram_n",),
          families=("stdp",), predictor=f"{_P}:ngram_readout", reads=("events",),
          listed=True, doc="n-grams of the first spikes' order (BindsNET)"),
    Level(axis="readout", name="linear", module=__name__, families=("stdp",),
          predictor=f"{_P}:linear_readout", reads=("counts",), listed=True,
          doc="logistic regression on spike counts, fit on the labelling set"),
    Level(axis="readout", name="filter_proportion", module=__name__, families=("stdp",),
          predictor=f"{_P}:filter_proportion_readout", reads=("maps",),
          doc="proportion weighting of each feature map's spikes summed over places"),
    Level(axis="readout", name="linear_pooled", module=__name__, uses=("pool",),
          families=("stdp",), predictor=f"{_P}:linear_pooled_readout", reads=("maps",),
          doc="linear probe on counts summed over pool x pool places (pool > 1)"),
    Level(axis="readout", name="output", module=__name__, families=("ann", "surrogate"),
          predictor=f"{_P}:output_readout", reads=("outputs",), listed=True,
          doc="the gradient-trained network's own output layer"),
)
