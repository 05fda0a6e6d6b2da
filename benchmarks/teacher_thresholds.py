"""What a Diehl & Cook network's weights know against what its spiking competition reads
from them (README: "Thresholds set from the weights"), for every saved cell of a
results folder:

    python benchmarks/teacher_thresholds.py results/dc2015_teacher \\
        --data-dir ../shared/datasets [--kmeans]

Per cell: its recorded proportion-weighting accuracy; the weights read as prototypes
(a test image gets the label of the neuron whose weights have the largest cosine
similarity with it; labels: the readout's assignments, and for a teacher also each
neuron's forced class, ``j`` modulo the classes); the first-to-fire proxy (the largest
``x . w_j / (thresh - rest + theta_j)``, assigned labels); and the correlation of
``thresh - rest + theta_j`` with the L2 norm of ``w_j``. With ``--kmeans``, k-means
prototypes for reference: fitted inside each class (size / classes each) and on all
images (labels by majority), for each network size in the folder. Cells without adaptive
thresholds (other neurons, conv layers) are left out. Test-split numbers here diagnose
networks; they choose nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stdp_bench.config import make_cell
from stdp_bench.data import cell_dataset
from stdp_bench.model_file import read_model
from stdp_bench.results import load_records

TEACHERS = ("teacher", "teacher_force", "teacher_sym")


def _unit(a: np.ndarray, axis: int) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=axis, keepdims=True), 1e-12)


def _kmeans(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, n: int,
            classes: int) -> str:
    from sklearn.cluster import MiniBatchKMeans

    k = max(1, n // classes)
    centres, labels = [], []
    for c in range(classes):
        fit = MiniBatchKMeans(k, random_state=0, n_init=3, batch_size=2048).fit(x[y == c])
        centres.append(fit.cluster_centers_)
        labels += [c] * k
    inside = np.asarray(labels)[(_unit(xt, 1) @ _unit(np.vstack(centres), 1).T).argmax(1)]
    fit = MiniBatchKMeans(n, random_state=0, n_init=3, batch_size=4096).fit(x)
    major = np.array([np.bincount(y[fit.labels_ == j], minlength=classes).argmax()
                      if (fit.labels_ == j).any() else 0 for j in range(n)])
    return (f"k-means, {n} prototypes: inside each class {(inside == yt).mean():.4f}, "
            f"on all images {(major[fit.predict(xt)] == yt).mean():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--kmeans", action="store_true")
    args = ap.parse_args()
    folder = Path(args.results)
    print("cell rule neurons seed | recorded | cosine: assigned forced | proxy | corr")
    sizes, ds = set(), None
    for rec in sorted(load_records(folder), key=lambda r: (r.settings["n_neurons"],
                                                           r.settings["rule"],
                                                           r.settings["seed"])):
        if "model" not in rec.artifacts:
            continue
        header, arrays = read_model(folder / rec.artifacts["model"])
        s = header["settings"]
        if s.get("architecture", "dc2015") != "dc2015" or s.get("neuron") != "adaptive":
            continue  # no adaptive thresholds beside input weights
        ds = ds or cell_dataset(make_cell(s), args.data_dir)  # one dataset per folder
        xt, yt = ds.x_test.astype(np.float32), ds.y_test
        W, theta = arrays["state/W"][0], arrays["state/theta"][0]
        assigned = arrays["readout/proportion_weighting/assignments"]
        gap = s["thresh_mv"] - s["rest_mv"] + theta  # > 0: theta >= 0 (calibrated too)
        n, classes = W.shape[1], int(header["n_classes"])
        sizes.add(n)
        nearest = (_unit(xt, 1) @ _unit(W, 0)).argmax(1)
        forced = (((np.arange(n) % classes)[nearest] == yt).mean()
                  if s["rule"] in TEACHERS else None)
        proxy = (assigned[(xt @ W / gap).argmax(1)] == yt).mean()
        corr = np.corrcoef(np.linalg.norm(W, axis=0), gap)[0, 1]
        print(f"{rec.key} {s['rule']} {n} {s['seed']} | "
              f"{rec.accuracy('proportion_weighting'):.4f} | "
              f"{(assigned[nearest] == yt).mean():.4f} "
              f"{'-' if forced is None else f'{forced:.4f}'} | {proxy:.4f} | {corr:.3f}")
    if args.kmeans and ds is not None:
        x, y = ds.x_train.astype(np.float32), ds.y_train
        for n in sorted(sizes):
            print(_kmeans(x, y, ds.x_test.astype(np.float32), ds.y_test, n,
                          ds.n_classes), flush=True)


if __name__ == "__main__":
    main()
