"""Levels of the ``architecture`` axis: each names the trainer that runs its cells
(:mod:`stdp_bench.trainers`; builders live in :mod:`stdp_bench.networks` and
:mod:`stdp_bench.baselines`).

>>> [(a.name, a.trainer.rsplit(":")[1]) for a in LEVELS if "stdp" in a.families]
... # doctest: +NORMALIZE_WHITESPACE
[('dc2015', 'ReplicaTrainer'), ('conv', 'FeatureTrainer'), ('local', 'FeatureTrainer'),
 ('stack', 'StackTrainer')]
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level, Param
from stdp_bench.levels.stack_spec import parse_layers


_T = "stdp_bench.trainers"
# Read by the gradient-trained baselines of family surrogate only.
_SURROGATE = ("surrogate_slope", "surrogate_beta", "mem_reg")
LEVELS = (
    Level(axis="architecture", name="dc2015", module=__name__, families=("stdp",),
          trainer=f"{_T}:ReplicaTrainer",
          doc="Diehl & Cook 2015: input -> excitatory (plastic) <-> inhibitory",
          uses=("n_neurons", "exc", "inh", "w_init_max", "norm", "min_spikes",
                "retry_rate_step_hz", "max_retries")),
    Level(axis="architecture", name="conv", module=__name__, families=("stdp",),
          trainer=f"{_T}:FeatureTrainer",
          doc="shared STDP filters over the image, winner-take-all between maps",
          uses=("kernel_size", "stride", "n_filters", "conv_norm", "conv_inh",
                "conv_learning", "conv_kwta", "conv_radius")),
    Level(axis="architecture", name="local", module=__name__, families=("stdp",),
          trainer=f"{_T}:FeatureTrainer",
          doc="locally connected STDP filters (one per place)",
          uses=("kernel_size", "stride", "n_filters", "conv_norm", "conv_inh",
                "conv_learning", "conv_kwta", "conv_radius")),
    Level(axis="architecture", name="stack", module=__name__, families=("stdp",),
          trainer=f"{_T}:StackTrainer",
          doc="layers of one-spike conv maps and pooling, trained greedily layer by layer "
              "(Kheradpisheh et al. 2018, as SpykeTorch runs it)",
          params=(Param("layers", "", parse=parse_layers,
                        doc="the stack's layers, a list of tables (levels/stack_spec.py)"),),
          uses=("time", "dt", "wmin", "wmax")),
    Level(axis="architecture", name="mlp", module=__name__, families=("ann", "surrogate"),
          trainer=f"{_T}:MlpBaseline",
          doc="one hidden layer, gradient-trained",
          uses=("n_neurons", "lr", "batch_size", *_SURROGATE)),
    Level(axis="architecture", name="cnn", module=__name__, families=("ann", "surrogate"),
          trainer=f"{_T}:CnnBaseline",
          doc="small convolutional network, gradient-trained",
          uses=("n_filters", "kernel_size", "lr", "batch_size", *_SURROGATE)),
)
