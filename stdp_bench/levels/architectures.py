"""Levels of the ``architecture`` axis (their builders live in :mod:`stdp_bench.networks`
and :mod:`stdp_bench.baselines`).

>>> [(a.name, a.trainer) for a in LEVELS if "stdp" in a.families]
[('dc2015', 'replicas'), ('conv', 'features'), ('local', 'features')]
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

LEVELS = (
    Level(axis="architecture", name="dc2015", module=__name__, families=("stdp",),
          trainer="replicas",
          doc="Diehl & Cook 2015: input -> excitatory (plastic) <-> inhibitory",
          uses=("n_neurons", "exc", "inh", "w_init_max", "norm")),
    Level(axis="architecture", name="conv", module=__name__, families=("stdp",),
          trainer="features",
          doc="shared STDP filters over the image, winner-take-all between maps",
          uses=("kernel_size", "stride", "n_filters", "conv_norm", "conv_inh",
                "conv_learning")),
    Level(axis="architecture", name="local", module=__name__, families=("stdp",),
          trainer="features",
          doc="locally connected STDP filters (one per place)",
          uses=("kernel_size", "stride", "n_filters", "conv_norm", "conv_inh",
                "conv_learning")),
    Level(axis="architecture", name="mlp", module=__name__, families=("ann", "surrogate"),
          trainer="baseline",
          doc="one hidden layer, gradient-trained", uses=("n_neurons", "lr", "batch_size")),
    Level(axis="architecture", name="cnn", module=__name__, families=("ann", "surrogate"),
          trainer="baseline",
          doc="small convolutional network, gradient-trained",
          uses=("n_filters", "kernel_size", "lr", "batch_size")),
)
