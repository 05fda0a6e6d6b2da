"""Levels of the ``readout`` axis: every STDP cell is scored by all of them
(:mod:`stdp_bench.readout`).

>>> [r.name for r in LEVELS]
['all_activity', 'proportion_weighting', 'ngram', 'linear']
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

LEVELS = (
    Level(axis="readout", name="all_activity", module=__name__,
          doc="class with the highest mean count of its labelled neurons (BindsNET)"),
    Level(axis="readout", name="proportion_weighting", module=__name__,
          doc="counts weighted by each neuron's class proportions (BindsNET)"),
    Level(axis="readout", name="ngram", module=__name__, uses=("ngram_n",),
          doc="n-grams of the first spikes' order (BindsNET)"),
    Level(axis="readout", name="linear", module=__name__,
          doc="logistic regression on spike counts, fit on the labelling set"),
)
