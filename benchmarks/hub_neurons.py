"""Why a large Diehl & Cook network's label-based accuracy swings: measurements on one
saved cell (README: "Why 6,400 neurons swung, and the fix").

    python benchmarks/hub_neurons.py results/NAME/artifacts/KEY/model.npz \\
        --data-dir ../shared/datasets [--settle 500 2000] [--passes 3] \\
        [--threshold-calibration weight_norm]

Responds to the whole training split and the test split with the reloaded network, then
prints: proportion weighting with labels from each 10,000-image slice of the training
set and from all of it (neurons labelled, predictions per class); with labels from the
last 10, 20, 30 and 60 thousand training images (neurons that never fire there, median
spikes a neuron), and on the last 10,000 training images labelled from 10,000 or 40,000
of the others (no test images); with ``--passes K``, each test image's spikes summed
over 1..K presentations (independent trains), labelled on all of the training set;
the neurons that fire
on the most test images with their thresholds; the accuracy with the busiest neurons'
spikes set to zero; and, for each ``--settle`` N, the accuracy after N training images
with the weights frozen and the thresholds adapting (training N images, then putting
the trained weights back: the same thing), labelled on the last 10,000 training images.
With ``--threshold-calibration``, all of it is measured on the network with its
thresholds set from its weights (:mod:`stdp_bench.threshold_calibration`).
Test-split numbers here diagnose a network; they choose nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bindsnet.evaluation import proportion_weighting

from stdp_bench.data import cell_dataset
from stdp_bench.model import load_model
from stdp_bench.readout import _labels


def _vote(p: dict[str, np.ndarray], test_counts: np.ndarray) -> np.ndarray:
    """Proportion-weighting predictions of ``test_counts`` with the labels ``p``."""
    return proportion_weighting(torch.as_tensor(test_counts, dtype=torch.float32)[:, None],
                                torch.as_tensor(p["assignments"]),
                                torch.as_tensor(p["proportions"]), 10).numpy()


def _pw(label_counts: np.ndarray, label_y: np.ndarray, test_counts: np.ndarray,
        seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Proportion-weighting predictions and the label assignments behind them."""
    p = _labels(label_counts, label_y, 10, seed)
    return _vote(p, test_counts), p["assignments"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--settle", type=int, nargs="*", default=[])
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--threshold-calibration", default=None, choices=["weight_norm"])
    args = ap.parse_args()
    if args.threshold_calibration is not None and args.settle:
        # --settle trains from the loaded state, which calibration has already changed:
        # the reverse of the protocol's order (settle, then calibrate).
        ap.error("--settle and --threshold-calibration measure different networks; "
                 "give one of them")
    model = load_model(args.model)
    if args.threshold_calibration is not None:
        model = model.calibrated(args.threshold_calibration)
    cfg, engine = model.cfg, model.engine
    ds = cell_dataset(cfg, args.data_dir)
    train = model.respond(ds.x_train)
    test = model.respond(ds.x_test)
    ytr, yte = ds.y_train, ds.y_test
    theta = engine.state()["theta"][0]
    last = slice(len(ytr) - 10_000, len(ytr))
    slices = [slice(lo, lo + 10_000) for lo in range(0, len(ytr), 10_000)]
    for part in [*slices, slice(0, len(ytr))]:
        pred, assigned = _pw(train[part], ytr[part], test, cfg.seed)
        print(f"labels from train[{part.start}:{part.stop}]: {int((assigned >= 0).sum())} "
              f"neurons labelled, proportion weighting {(pred == yte).mean():.4f}, "
              f"predictions per class {np.bincount(pred[pred >= 0], minlength=10).tolist()}")
    for n in (10_000, 20_000, 30_000, len(ytr)):
        spikes = train[-n:].sum(0)
        pred, _ = _pw(train[-n:], ytr[-n:], test, cfg.seed)
        print(f"labels from the last {n}: {int((spikes == 0).sum())} neurons never fire, "
              f"median {np.median(spikes):.0f} spikes a neuron, proportion weighting "
              f"{(pred == yte).mean():.4f}")
    held = slice(len(ytr) - 10_000, len(ytr))
    for n in (10_000, 40_000):
        lab = slice(held.start - n, held.start)
        pred, _ = _pw(train[lab], ytr[lab], train[held], cfg.seed)
        print(f"labels from train[{lab.start}:{lab.stop}], scored on train[{held.start}:"
              f"{held.stop}]: proportion weighting {(pred == ytr[held]).mean():.4f}")
    if args.passes > 1:
        # Positions past the first pass give each repeat its own Poisson trains.
        x = np.concatenate([ds.x_test] * args.passes)
        each = model.respond(x).reshape(args.passes, len(yte), -1)
        summed = np.zeros_like(test, dtype=np.float64)
        labels = _labels(train, ytr, 10, cfg.seed)  # from all of the training set, once
        for k in range(args.passes):
            summed += each[k]
            alone = (_vote(labels, each[k]) == yte).mean()
            print(f"test pass {k + 1}: alone {alone:.4f}, passes 1-{k + 1} summed "
                  f"{(_vote(labels, summed) == yte).mean():.4f}")
    pred, assigned = _pw(train[last], ytr[last], test, cfg.seed)
    share = (test > 0).mean(0)
    busiest = np.argsort(-share)[:10]
    fired = train[last].sum(0) > 0
    print(f"median threshold: {np.median(theta[fired]):.2f} mV of the neurons firing on "
          f"the labelling images, {np.median(theta[~fired]):.2f} mV of the "
          f"{int((~fired).sum())} others")
    for j in busiest[:4]:
        print(f"neuron {j}: fires on {share[j]:.3f} of test images, threshold "
              f"{theta[j]:.2f} mV, label {assigned[j]}")
    for drop in (1, 10):
        muted = test.copy()
        muted[:, busiest[:drop]] = 0
        print(f"busiest {drop} muted: proportion weighting "
              f"{(_pw(train[last], ytr[last], muted, cfg.seed)[0] == yte).mean():.4f}")
    trained = {k: v.copy() for k, v in engine.state().items()}
    for n in args.settle:
        engine.load_state(trained)
        # Positions far past training, so the settling draws are not training's.
        engine.train(ds.x_train, ds.y_train, np.arange(n)[None], start=10 ** 7)
        engine.load_state({**trained, "theta": engine.state()["theta"]})
        lab = engine.respond(ds.x_train, np.arange(last.start, last.stop)[None],
                             phase=1).counts[0]
        tst = engine.respond(ds.x_test, np.arange(len(yte))[None], phase=2).counts[0]
        print(f"settle {n}: proportion weighting "
              f"{(_pw(lab, ytr[last], tst, cfg.seed)[0] == yte).mean():.4f}, busiest neuron "
              f"on {(tst > 0).mean(0).max():.3f} of test images")


if __name__ == "__main__":
    main()
