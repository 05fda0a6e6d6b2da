"""Per-replica parameters of Diehl & Cook networks, read once from each ``CellConfig``.

Both engines (the fused kernel and the BindsNET replica network) take their numbers from
here, so a cell maps onto parameters one way. The network's own parameters form a
numpy record (:data:`NETWORK_RECORD`); the neuron and rule levels contribute records of
their own (each level module's ``RECORD`` and ``kernel_params``). Only numpy, plus torch
where weights are drawn.

>>> from stdp_bench.config import CellConfig
>>> p = replica_params([CellConfig(neuron="lif", inh=60.0)], [1.0], n_classes=10)
>>> float(p.network[0]["inh"]), p.neurons[0].dtype.names[:2]
(60.0, ('thresh', 'rest'))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.levels import registry
from stdp_bench.levels.spec import Level
from stdp_bench.levels.units import decay

NETWORK_RECORD = np.dtype([
    ("rate", np.float32), ("gain", np.float32), ("dt", np.float32),
    ("exc", np.float32), ("inh", np.float32),
    ("ithresh", np.float32), ("irest", np.float32), ("ireset", np.float32),
    ("irefrac", np.float32), ("idecay", np.float32),
    ("trace_decay", np.float32), ("wmin", np.float32), ("wmax", np.float32),
    ("norm", np.float32), ("retry_step", np.float32),
    ("min_spikes", np.int64), ("max_retries", np.int64), ("n_classes", np.int64),
    ("one_spike", np.int64), ("seed", np.uint64),
])


#: Settings that do not change the network a cell trains, at their "off" values:
#: ``curve_every`` only adds measurements (labelling and testing during training), and
#: ``settle`` and ``threshold_calibration`` act after training.
AFTER_TRAINING: dict[str, Any] = {"curve_every": 0, "settle": 0,
                                  "threshold_calibration": "none"}


def replica_seed(cfg: CellConfig) -> int:
    """63-bit seed of a cell's weights and spike draws, from its id and seed factor.

    The :data:`AFTER_TRAINING` settings are left out: a cell with a learning curve,
    settled or calibrated thresholds trains the network the cell without them trains.
    """
    network = (cfg.with_settings(**AFTER_TRAINING)
               if any(getattr(cfg, k) != v for k, v in AFTER_TRAINING.items()) else cfg)
    digest = hashlib.sha256(f"{network.cell_id()}:{cfg.seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def initial_weights(cfg: CellConfig, n_input: int):
    """``w_init_max * U(0, 1)`` input weights, as BindsNET's DiehlAndCook2015 draws them."""
    import torch

    gen = torch.Generator().manual_seed(replica_seed(cfg))
    return cfg.w_init_max * torch.rand(n_input, cfg.n_neurons, generator=gen)


def auto_gain(encoder: str, x_train: np.ndarray, rate_hz: float, time: int,
              dt: float = 1.0) -> float:
    """Input current gain that gives an encoder the Poisson code's mean input volume.

    The level's module says (its ``input_gain``); rate codes have none and get 1.

    >>> auto_gain("poisson", np.ones((2, 4)), 128.0, 250)
    1.0
    """
    module = registry.module(registry.get("encoder", encoder))
    if hasattr(module, "input_gain"):
        return float(module.input_gain(x_train, rate_hz, time, dt))
    return 1.0


def network_record(cfg: CellConfig, gain: float, n_classes: int) -> np.ndarray:
    """The network's parameters of one replica as a 1-element :data:`NETWORK_RECORD`."""
    neuron = registry.get("neuron", cfg.neuron)
    rec = np.zeros(1, NETWORK_RECORD)
    values: dict[str, Any] = {
        "rate": cfg.intensity_hz, "gain": gain, "dt": cfg.dt, "exc": cfg.exc,
        "inh": cfg.inh, "ithresh": cfg.inh_thresh_mv, "irest": cfg.inh_rest_mv,
        "ireset": cfg.inh_reset_mv, "irefrac": cfg.inh_refrac_ms,
        "idecay": decay(cfg.dt, cfg.inh_tc_decay_ms),
        "trace_decay": decay(cfg.dt, cfg.tc_trace_ms), "wmin": cfg.wmin, "wmax": cfg.wmax,
        "norm": cfg.norm, "retry_step": cfg.retry_rate_step_hz,
        "min_spikes": cfg.min_spikes, "max_retries": cfg.max_retries,
        "n_classes": n_classes, "one_spike": int(neuron.one_spike and cfg.one_spike),
        "seed": replica_seed(cfg),
    }
    for name, value in values.items():
        rec[name] = value
    return rec


def level_record(level: Level, cfg: CellConfig) -> np.ndarray:
    """A level's parameters of one replica as a 1-element array of its ``RECORD``."""
    module = registry.module(level)
    values = module.kernel_params(cfg)
    rec = np.zeros(1, module.RECORD)
    missing = set(module.RECORD.names) ^ set(values)
    if missing:
        raise ValueError(f"{level.module}: kernel_params and RECORD disagree on "
                         f"{', '.join(sorted(missing))}")
    for name, value in values.items():
        rec[name] = value
    return rec


@dataclass
class ReplicaParams:
    """Records of R replicas: ``network`` (R,), and one 1-element record per replica for
    its neuron and rule levels (their dtypes differ between levels)."""

    network: np.ndarray
    neurons: list[np.ndarray]
    rules: list[np.ndarray]


def replica_params(cfgs: list[CellConfig], gains: list[float], n_classes: int
                   ) -> ReplicaParams:
    """The records of replicas ``cfgs`` with input gains ``gains``."""
    network = np.concatenate([network_record(c, g, n_classes) for c, g in zip(cfgs, gains)])
    neurons = [level_record(registry.get("neuron", c.neuron), c) for c in cfgs]
    rules = [level_record(registry.get("rule", c.rule), c) for c in cfgs]
    return ReplicaParams(network, neurons, rules)
