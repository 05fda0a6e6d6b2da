"""A plugin architecture with its own trainer and engine: a fixed random projection of
the image whose units "fire" as often as their input drive allows (no learning).
It shows what an engine must implement to run through stdp_bench's protocol."""

import numpy as np

from stdp_bench.engine.responses import Responses, TrainStats
from stdp_bench.levels.spec import Level
from stdp_bench.trainers import Trainer

LEVEL = Level(axis="architecture", name="random_projection", module=__name__,
              families=("stdp",), trainer=f"{__name__}:ProjectionTrainer",
              uses=("n_neurons", "seed"),
              doc="fixed random projection, counts = rectified drive (demo plugin)")


class ProjectionEngine:
    name = "projection"
    device = "cpu"

    def __init__(self, cfg, n_input):
        rng = np.random.default_rng([cfg.seed, 17])
        self.W = rng.normal(0.0, 1.0, (1, n_input, cfg.n_neurons)).astype(np.float32)

    def train(self, X, Y, orders, *, start=0, on_progress=None):
        if on_progress is not None:
            on_progress(orders.shape[1])
        return TrainStats.zeros(1, orders.shape[1])

    def respond(self, X, orders, *, phase, on_progress=None):
        drive = X[orders[0]] @ self.W[0]
        counts = np.floor(np.maximum(drive, 0.0)).astype(np.int64)[None]
        K = counts.shape[1]
        if on_progress is not None:
            on_progress(K)
        return Responses(counts, np.zeros((1, K, 0, 2), np.int32), np.zeros((1, K), np.int64),
                         np.zeros((1, K), np.int64))

    def state(self):
        return {"W": self.W.copy()}

    def load_state(self, state):
        self.W = np.array(state["W"], np.float32)

    def activity(self, r, tested):
        per = tested.counts[r].sum(1)
        return {"exc_spikes_per_sample": float(per.mean()),
                "silent_fraction": float((per == 0).mean()),
                "synops_per_sample": float(self.W.shape[1] * self.W.shape[2])}

    def training_metrics(self, r, stats):
        return {}

    def arrays(self, r):
        return {"weights": self.W[r].astype(np.float16)}


class ProjectionTrainer(Trainer):
    provides = ("counts",)

    @classmethod
    def engine_name(cls, cfgs, execution):
        return ProjectionEngine.name

    @classmethod
    def build(cls, cfgs, ds, gains, execution):
        (cfg,) = cfgs
        return ProjectionEngine(cfg, ds.n_input)
