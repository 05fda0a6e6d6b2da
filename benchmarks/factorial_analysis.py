"""What works, and why, in a factorial results folder: the notebook's analysis as a script.

    python benchmarks/factorial_analysis.py results/conv_factorial --readout linear

Prints, for one readout: the mean accuracy (and 95% t-interval over seeds) of every
encoder x neuron x rule cell with its spikes per test image and silent fraction; every
plastic cell's margin over the random-weight control (``rule = none``) of its encoder x
neuron, seed by seed; and the variance decomposition (eta squared of each factor and
each pair's interaction, sums of squares of the balanced design, as
``notebooks/factorial_study.ipynb`` computes it).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

FACTORS = ["encoder", "neuron", "rule"]


def interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean and 95% t-interval of ``values`` (the mean twice for one value)."""
    v = values.to_numpy(float)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - h, m + h


def cells_table(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per encoder x neuron x rule: accuracy, interval, activity."""
    rows = []
    for key, g in ok.groupby(FACTORS):
        m, lo, hi = interval(g["accuracy"])
        rows.append({**dict(zip(FACTORS, key)), "accuracy": m, "lo": lo, "hi": hi,
                     "seeds": len(g), "spikes": g["exc_spikes_per_sample"].mean(),
                     "silent": g["silent_fraction"].mean()})
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False)


def margins(ok: pd.DataFrame) -> pd.DataFrame:
    """Each plastic cell minus the ``none`` cell of its encoder x neuron, per seed."""
    control = ok[ok["rule"] == "none"].set_index(["encoder", "neuron", "seed"])["accuracy"]
    rows = []
    for key, g in ok[ok["rule"] != "none"].groupby(FACTORS):
        d = [a - control.get((key[0], key[1], s), np.nan)
             for a, s in zip(g["accuracy"], g["seed"])]
        m, lo, hi = interval(pd.Series(d))
        rows.append({**dict(zip(FACTORS, key)), "margin": m, "lo": lo, "hi": hi,
                     "per_seed": " ".join(f"{x:+.4f}" for x in d)})
    return pd.DataFrame(rows).sort_values("margin", ascending=False)


def decomposition(ok: pd.DataFrame) -> pd.DataFrame:
    """Eta squared of each factor and each pair's interaction."""
    grand = ok["accuracy"].mean()
    total = ((ok["accuracy"] - grand) ** 2).sum()
    terms = []
    for f in FACTORS:
        g = ok.groupby(f)["accuracy"]
        ss = (g.count() * (g.mean() - grand) ** 2).sum()
        terms.append({"term": f, "eta_squared": ss / total})
    for a, b in itertools.combinations(FACTORS, 2):
        cell = ok.groupby([a, b])["accuracy"]
        ma, mb = ok.groupby(a)["accuracy"].mean(), ok.groupby(b)["accuracy"].mean()
        ss = sum(n * (m - ma[ka] - mb[kb] + grand) ** 2
                 for (ka, kb), m, n in zip(cell.mean().index, cell.mean(), cell.count()))
        terms.append({"term": f"{a} x {b}", "eta_squared": ss / total})
    return pd.DataFrame(terms).sort_values("eta_squared", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--readout", default="linear")
    args = parser.parse_args()
    table = pd.read_parquet(args.folder / "results.parquet")
    ok = table[(table["status"] == "ok") & (table["readout"] == args.readout)]
    print(f"{args.folder}: {len(ok)} ok rows of readout {args.readout}; statuses "
          f"{table.drop_duplicates('cell_id')['status'].value_counts().to_dict()}")
    with pd.option_context("display.width", 160, "display.max_rows", 200,
                           "display.float_format", "{:.4f}".format):
        print(cells_table(ok).to_string(index=False))
        print("\nmargin over the random-weight control (same encoder x neuron, same seed):")
        print(margins(ok).to_string(index=False))
        print("\nvariance decomposition:")
        print(decomposition(ok).to_string(index=False))


if __name__ == "__main__":
    main()
