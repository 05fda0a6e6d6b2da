"""A gradient-trained baseline (family ann or surrogate) as an engine (R = 1).

The adapter that lets :mod:`stdp_bench.protocol` run baselines like the STDP engines:
``train`` is Adam over minibatches of the training samples for ``epochs`` passes,
``respond`` the output layer on frozen weights (``Responses.outputs``; ``counts`` hold
each sample's activity: non-zero ReLU activations or spikes). Everything is seeded by
the cell's seed, as :func:`train_baseline` always was.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from stdp_bench.baselines import MODELS, ann_macs, input_synops
from stdp_bench.config import CellConfig
from stdp_bench.engine.interface import Metrics
from stdp_bench.engine.responses import Responses, TrainStats
from stdp_bench.seeding import global_rngs_seeded

Progress = Callable[[int], None]
EVAL_BATCH = 1000
# The state entry holding the surrogate encoders' generator (a state_dict has no '#').
_GENERATOR = "#encoder_generator"


class BaselineEngine:
    """One gradient-trained network; ``convolutional`` picks the CNN over the MLP.

    >>> from stdp_bench.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> cfg = CellConfig(family="ann", architecture="mlp", dataset="digits", n_neurons=16,
    ...                  epochs=1, batch_size=64)
    >>> eng = BaselineEngine(cfg, ds.input_shape, ds.n_classes, convolutional=False)
    >>> stats = eng.train(ds.x_train, ds.y_train, np.arange(256)[None])
    >>> eng.respond(ds.x_test, np.arange(10)[None], phase=2).outputs.shape
    (1, 10, 10)
    """

    name = "autograd"

    def __init__(self, cfg: CellConfig, input_shape: tuple[int, int, int], n_classes: int,
                 *, convolutional: bool, device: str = "cpu") -> None:
        self.cfg = cfg
        self.input_shape = input_shape
        self.device = device
        self.cuda = str(device).startswith("cuda")
        # Layers initialise from torch's global generator: seeded here, restored after.
        with global_rngs_seeded(cfg.seed, cuda=self.cuda):
            self.model = MODELS[cfg.family](cfg, math.prod(input_shape), input_shape,
                                            n_classes, convolutional).to(device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.losses: list[float] = []

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, start: int = 0,
              on_progress: Progress | None = None, max_steps: int | None = None
              ) -> TrainStats:
        """Adam at ``lr`` on the training samples ``orders[0, :n_train]`` (the first
        epoch's order: the baseline reshuffles each epoch itself), ``epochs`` passes.
        ``start`` > 0 is refused: a baseline trains in one call. ``max_steps`` stops
        early (tests)."""
        if start:
            raise ValueError("a baseline trains in one call; it cannot continue from "
                             f"position {start}")
        cfg = self.cfg
        train = np.asarray(orders)[0][:cfg.n_train]
        with global_rngs_seeded(cfg.seed, cuda=self.cuda):
            self._fit(X[train], Y[train], on_progress, max_steps)
        return TrainStats.zeros(1, len(train))

    def _fit(self, x: np.ndarray, y: np.ndarray, on_progress: Progress | None,
             max_steps: int | None) -> None:
        cfg, model, dev = self.cfg, self.model, self.device
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(dev)
        order_gen = np.random.default_rng([cfg.seed, 5])
        t0 = time.perf_counter()
        model.train()
        for _ in range(cfg.epochs):
            perm = torch.from_numpy(order_gen.permutation(len(xt))).to(dev)
            for lo in range(0, len(xt), cfg.batch_size):
                idx = perm[lo:lo + cfg.batch_size]
                logits, stats = model.images(xt[idx], self.gen)
                loss = nn.functional.cross_entropy(logits, yt[idx]) + model.penalty(stats)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss became {value} at minibatch "
                                             f"{len(self.losses) + 1}")
                self.losses.append(value)
                if on_progress is not None:
                    on_progress(len(idx))
                if max_steps is not None and len(self.losses) >= max_steps:
                    break
            if max_steps is not None and len(self.losses) >= max_steps:
                break
        self.train_seconds = time.perf_counter() - t0

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int,
                on_progress: Progress | None = None) -> Responses:
        """Output-layer values and activity per sample of ``X[orders[0]]``."""
        model = self.model
        model.eval()
        xe = torch.from_numpy(np.ascontiguousarray(X[np.asarray(orders)[0]],
                                                   dtype=np.float32)).to(self.device)
        outputs, activity, synops = [], [], []
        with torch.no_grad():
            for lo in range(0, len(xe), EVAL_BATCH):
                logits, stats = model.images(xe[lo:lo + EVAL_BATCH], self.gen)
                outputs.append(logits.cpu())
                # "Spikes" of an ANN are its non-zero ReLU activations.
                activity.append(stats["spikes" if model.spiking else "active"].cpu())
                if model.spiking:
                    synops.append(stats["synops"].cpu())
                if on_progress is not None:
                    on_progress(len(logits))
        self._tested_x = xe
        self._synops = torch.cat(synops) if synops else None
        K = len(xe)
        act = torch.cat(activity).float()
        return Responses(act.numpy()[None, :, None], np.zeros((1, K, 0, 2), np.int32),
                         np.zeros((1, K), np.int64), np.zeros((1, K), np.int64),
                         outputs=torch.cat(outputs).numpy()[None])

    def state(self) -> dict[str, np.ndarray]:
        """The network's parameters and buffers (its ``state_dict``) and the position of
        the spike encoder's generator, as numpy with a replica axis of 1."""
        out = {k: v.detach().cpu().numpy()[None] for k, v in self.model.state_dict().items()}
        out[_GENERATOR] = self.gen.get_state().numpy()[None]
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Load :meth:`state`'s arrays into the network and the encoder's generator."""
        self.model.load_state_dict({k: torch.as_tensor(v[0]) for k, v in state.items()
                                    if k != _GENERATOR})
        self.gen.set_state(torch.as_tensor(state[_GENERATOR][0]))

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Activity and synaptic operations (or multiply-accumulates) per test sample.

        ``tested`` must be the last :meth:`respond`'s: the spiking net's synaptic
        operations were counted there, and its input events are drawn from the same
        images (continuing the encoder's generator, as the baselines always did)."""
        act = tested.counts[r][:, 0]
        if self.model.spiking:
            steps = max(1, int(self.cfg.time / self.cfg.dt))
            ops = float(self._synops.mean()) + input_synops(
                self.model, self._tested_x, self.cfg, steps, self.gen)
        else:
            # Multiply-accumulates of one forward pass: each weight is used once (MLP) or
            # once per output position (CNN).
            ops = float(ann_macs(self.model, self.input_shape[1:]))
        return {"exc_spikes_per_sample": float(act.mean()),
                "silent_fraction": float((act == 0).mean()),
                "synops_per_sample": ops}

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Parameter count, last loss and minibatches run."""
        return {"n_params": float(sum(p.numel() for p in self.model.parameters())),
                "final_loss": self.losses[-1] if self.losses else float("nan"),
                "minibatches": float(len(self.losses))}

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """Nothing: a baseline's parameters are not drawn as receptive fields."""
        return {}
