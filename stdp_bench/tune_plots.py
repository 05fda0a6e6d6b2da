"""Figures of a tuned grid: default vs tuned heatmaps, optimisation histories, and
parameter importances (Optuna's fANOVA evaluator, seeded, on each study's completed
trials).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from stdp_bench import results
from stdp_bench.plots import (FIGURES_DIR, annotated_heatmap, colormap, format_value,
                              heatmap_tables, save_figure)

def stage_tables(df: pd.DataFrame, *, x: str, y: str, facet: str | None, readout: str,
                 metric: str = "accuracy") -> dict[object, dict[str, pd.DataFrame]]:
    """Per facet level: the default and tuned mean tables and their difference."""
    per_stage = {stage: heatmap_tables(df[df["stage"] == stage], x=x, y=y, facet=facet,
                                       metric=metric, readout=readout)
                 for stage in results.STAGES}
    return {level: {"default": per_stage["default"][level],
                    "tuned": per_stage["tuned"][level],
                    "tuned - default": per_stage["tuned"][level] - per_stage["default"][level]}
            for level in per_stage["default"]}


def stage_heatmaps(df: pd.DataFrame, *, x: str = "encoder", y: str = "rule",
                   facet: str | None = "neuron", readout: str = "proportion_weighting",
                   path: Path) -> Path:
    """One row per facet level: default, tuned (same scale) and tuned minus default."""
    tables = stage_tables(df, x=x, y=y, facet=facet, readout=readout)
    n_rows = len(tables)
    first = next(iter(tables.values()))["default"]
    w, h = max(3.0, 0.9 * first.shape[1] + 1.5), max(2.5, 0.5 * first.shape[0] + 1.5)
    fig = Figure(figsize=(3 * w + 1.5, n_rows * h + 0.8), layout="constrained")
    axes = fig.subplots(n_rows, 3, squeeze=False)
    acc_norm = Normalize(0.0, 1.0)
    diffs = np.concatenate([t["tuned - default"].to_numpy().ravel() for t in tables.values()])
    span = float(np.nanmax(np.abs(diffs))) if np.isfinite(diffs).any() else 0.0
    diff_norm = TwoSlopeNorm(0.0, -max(span, 1e-3), max(span, 1e-3))
    acc_img = diff_img = None
    for row, (level, panels) in zip(axes, tables.items()):
        for ax, (name, table) in zip(row, panels.items()):
            if name == "tuned - default":
                diff_img = annotated_heatmap(ax, table, colormap("RdBu"), diff_norm,
                                             lambda v: "n/a" if not np.isfinite(v)
                                             else f"{100 * v:+.1f}")
            else:
                acc_img = annotated_heatmap(ax, table, colormap("viridis"), acc_norm,
                                            lambda v: format_value(v, "accuracy"))
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.set_title(name if level is None else f"{name}, {facet} = {level}", fontsize=9)
    fig.colorbar(acc_img, ax=list(axes[:, :2].ravel()), shrink=0.8, label="accuracy")
    fig.colorbar(diff_img, ax=list(axes[:, 2]), shrink=0.8, label="tuned - default (accuracy)")
    fig.suptitle(f"test accuracy (mean over seeds), readout: {readout}")
    return save_figure(fig, path)


def optimisation_histories(trials: pd.DataFrame, path: Path) -> Path:
    """Each study's validation accuracy per trial (pruned trials at the rung they reached)
    and the best completed value so far."""
    names = list(dict.fromkeys(trials["study"]))
    cols = max(1, math.ceil(math.sqrt(len(names))))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(2.6 * cols + 0.5, 2.0 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, name in zip(axes, names):
        t = trials[trials["study"] == name].sort_values("trial")
        done = t[t["state"] == "COMPLETE"]
        pruned = t[t["state"] == "PRUNED"]
        ax.scatter(pruned["trial"], pruned["value"], s=8, c="lightgrey", label="pruned")
        ax.scatter(done["trial"], done["value"], s=10, c="tab:blue", label="complete")
        best = t["value"].where(t["state"] == "COMPLETE").cummax()
        ax.step(t["trial"], best, where="post", c="tab:red", lw=1, label="best")
        ax.set_title(name.replace(",", ", "), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
    for ax in axes[len(names):]:
        ax.axis("off")
    axes[0].legend(fontsize=6, loc="lower right")
    fig.supxlabel("trial")
    fig.supylabel("validation accuracy")
    return save_figure(fig, path)


def param_importances(storage_url: str, study_names: list[str], path: Path) -> Path:
    """Heatmap of each study's parameter importances (fANOVA, seed 0); a study with
    fewer than two completed trials gets an empty row."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    rows = {}
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=storage_url)
        done = study.get_trials(deepcopy=False,
                                states=(optuna.trial.TrialState.COMPLETE,))
        if len(done) < 2:
            rows[name] = {}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows[name] = get_param_importances(study,
                                               evaluator=FanovaImportanceEvaluator(seed=0))
    table = pd.DataFrame.from_dict(rows, orient="index").astype(float)
    fig = Figure(figsize=(0.7 * max(1, table.shape[1]) + 3.5, 0.25 * len(table) + 1.8),
                 layout="constrained")
    ax = fig.subplots()
    image = annotated_heatmap(ax, table, colormap("magma_r"), Normalize(0.0, 1.0),
                              lambda v: "" if not np.isfinite(v) else f"{v:.2f}")
    ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=ax, label="importance (fANOVA)")
    ax.set_title("parameter importance per cell (completed trials)", fontsize=10)
    return save_figure(fig, path)


def plot_tuning(out_dir: Path, *, x: str = "encoder", y: str = "rule",
                facet: str | None = "neuron", readout: str = "proportion_weighting",
                fig_dir: Path | None = None) -> list[Path]:
    """The figures of a tuned grid's folder (``stdp-bench tune``'s output), in ``fig_dir``
    (by default ``out_dir/figures``)."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / FIGURES_DIR if fig_dir is None else Path(fig_dir)
    written = []
    df = results.read_table(out_dir)
    if "stage" in df.columns:
        use_facet = facet if facet in df.columns and facet not in (x, y) else None
        written.append(stage_heatmaps(df, x=x, y=y, facet=use_facet, readout=readout,
                                      path=fig_dir / f"heatmap_stages_{readout}.png"))
    trials_path = out_dir / f"{results.TRIALS_STEM}.parquet"
    if trials_path.is_file():
        trials = pd.read_parquet(trials_path)
        written.append(optimisation_histories(trials, fig_dir / "optimisation_history.png"))
        written.append(param_importances(f"sqlite:///{out_dir / results.STUDY_DB}",
                                         list(dict.fromkeys(trials["study"])),
                                         fig_dir / "param_importances.png"))
    return written
