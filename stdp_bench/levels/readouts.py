"""Levels of the ``readout`` axis: a cell is scored by every readout of its family whose
kinds of response its trainer provides (:mod:`stdp_bench.readout` holds the predictors).

>>> [r.name for r in LEVELS]  # doctest: +NORMALIZE_WHITESPACE
['all_activity', 'proportion_weighting', 'ngram', 'linear', 'filter_proportion',
 'linear_pooled', 'svm', 'decision', 'output']
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level, Param

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
    # Opt-in (svm_c > 0): a readout scores every cell that provides what it reads, so an
    # SVM on by default would add a row and a fit to every existing grid's cells.
    Level(axis="readout", name="svm", module=__name__, uses=("pool",),
          params=(Param("svm_c", 0.0, low=0.0,
                        doc="C of the linear SVM readout; 0 leaves the readout off"),
                  Param("svm_standardize", True,
                        doc="standardise the features first (off: as they are, sparse)")),
          families=("stdp",), predictor=f"{_P}:svm_readout", reads=("counts",),
          doc="linear SVM on spike counts (pooled per map when pool > 1; svm_c > 0)"),
    Level(axis="readout", name="decision", module=__name__, families=("stdp",),
          predictor=f"{_P}:decision_readout", reads=("decisions",),
          doc="the class of a stack's decision layer: its first spike decides (ties: the "
              "larger potential), no classifier fit"),
    Level(axis="readout", name="output", module=__name__, families=("ann", "surrogate"),
          predictor=f"{_P}:output_readout", reads=("outputs",), listed=True,
          doc="the gradient-trained network's own output layer"),
)
