"""Figures for a results folder: factor heatmaps, receptive fields, a confusion matrix.

Figures are built on ``matplotlib.figure.Figure`` rather than pyplot, so no global
figure state is kept between calls and nothing leaks in long sessions.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: grids run on servers without a display

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Colormap, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from stdp_bench import results  # noqa: E402
from stdp_bench.records import CellRecord, Status  # noqa: E402

FIGURES_DIR = "figures"
NAN_COLOUR = "lightgrey"


def _sorted_levels(values: pd.Series) -> list[object]:
    levels = list(pd.unique(values.dropna()))
    try:
        return sorted(levels)
    except TypeError:  # mixed types cannot be ordered; strings can
        return sorted(levels, key=str)


def _require_columns(df: pd.DataFrame, **named: str) -> None:
    for role, col in named.items():
        if col not in df.columns:
            raise ValueError(f"{role}={col!r} is not a column; available columns: {list(df.columns)}")


def heatmap_tables(df: pd.DataFrame, *, x: str = "encoder", y: str = "rule",
                   facet: str | None = "neuron", metric: str = "accuracy",
                   readout: str = "proportion_weighting") -> dict[object, pd.DataFrame]:
    """The numbers behind :func:`heatmaps`: per facet level, mean ``metric`` with y rows, x columns.

    The metric is averaged over every other column (seeds and the like). All panels share
    the same row and column levels, with NaN where a combination has no finite value.
    The key is None when there is no facet.
    """
    _require_columns(df, x=x, y=y, metric=metric)
    if "readout" in df.columns:
        available = _sorted_levels(df["readout"])
        df = df[df["readout"] == readout]
        if df.empty:
            raise ValueError(f"no rows for readout {readout!r}; available readouts: {available}")
    df = df.assign(**{metric: pd.to_numeric(df[metric])})
    xs, ys = _sorted_levels(df[x]), _sorted_levels(df[y])
    use_facet = facet is not None and facet in df.columns and facet not in (x, y)
    facet_levels: list[object] = _sorted_levels(df[facet]) if use_facet else [None]

    tables: dict[object, pd.DataFrame] = {}
    for level in facet_levels:
        sub = df[df[facet] == level] if use_facet else df
        sub = sub[np.isfinite(sub[metric])]
        if sub.empty:
            table = pd.DataFrame(np.nan, index=ys, columns=xs)
        else:
            table = sub.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
        tables[level] = table.reindex(index=ys, columns=xs).astype(float)
    return tables


def format_value(value: float, metric: str) -> str:
    """A heatmap cell's text: accuracy in percent, other metrics to 3 digits, n/a for NaN."""
    if not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}%" if metric == "accuracy" else f"{value:.3g}"


def colormap(name: str) -> Colormap:
    """Matplotlib's colormap ``name``, drawing NaN (no data) in light grey."""
    return colormaps[name].with_extremes(bad=NAN_COLOUR)


def _text_colour(cmap: Colormap, norm: Normalize, value: float) -> str:
    if not np.isfinite(value):
        return "black"
    r, g, b, _ = cmap(norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _wrap(title: str, width: int = 60) -> str:
    # Titles carry every factor level and would otherwise run off the figure.
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made as needed); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def annotated_heatmap(ax, table: pd.DataFrame, cmap: Colormap, norm: Normalize,
                      fmt: Callable[[float], str]):
    """Draw ``table`` (rows on y, columns on x) on ``ax`` with each value written in its
    cell; return the image for a colour bar."""
    values = table.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(j, i, fmt(v), ha="center", va="center", fontsize=8,
                    color=_text_colour(cmap, norm, v))
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns], rotation=30,
                  ha="right")
    ax.set_yticks(range(values.shape[0]), [str(r) for r in table.index])
    return image


def heatmaps(df: pd.DataFrame, *, x: str = "encoder", y: str = "rule", facet: str | None = "neuron",
             metric: str = "accuracy", readout: str = "proportion_weighting", path: Path) -> Path:
    """One annotated heatmap of mean ``metric`` (y rows, x columns) per level of ``facet``.

    All panels share one colour scale (0..1 for accuracy); cells without data are grey
    and marked "n/a". Raises ValueError if x, y or metric is not a column.
    """
    tables = heatmap_tables(df, x=x, y=y, facet=facet, metric=metric, readout=readout)
    if metric == "accuracy":
        norm = Normalize(0.0, 1.0)
    else:
        finite = np.concatenate([t.to_numpy().ravel() for t in tables.values()])
        finite = finite[np.isfinite(finite)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm = Normalize(lo, hi if hi > lo else lo + 1.0)
    cmap = colormap("viridis")

    n_rows, n_cols = next(iter(tables.values())).shape
    n_panels = len(tables)
    panel_w, panel_h = max(3.0, 0.9 * n_cols + 1.5), max(2.5, 0.5 * n_rows + 1.5)
    title = f"{metric} (mean over seeds), readout: {readout}"
    # At least as wide as the title (about 0.1 inch a character at the default size):
    # one panel of one cell was narrower, and the title was cut at both ends.
    width = max(panel_w * n_panels + 1.0, 0.1 * len(title) + 0.4)
    fig = Figure(figsize=(width, panel_h + 0.6), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    image = None
    for ax, (level, table) in zip(axes, tables.items()):
        image = annotated_heatmap(ax, table, cmap, norm, lambda v: format_value(v, metric))
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        if level is not None:
            ax.set_title(f"{facet} = {level}")
    fig.colorbar(image, ax=list(axes), shrink=0.9, label=metric)
    fig.suptitle(title)
    return save_figure(fig, path)


# Up to this many input channels sit side by side in a neuron's tile; more are laid out
# in a near-square grid (a stack's deep layer has hundreds: side by side, one thin strip).
SIDE_BY_SIDE_CHANNELS = 4


def channel_tiles(w: np.ndarray, channels: int, h: int, wd: int) -> np.ndarray:
    """Each neuron's ``(channels * h * wd)`` weights as one 2-D tile ``(H, W, n)``: its
    channel maps side by side, or with more than :data:`SIDE_BY_SIDE_CHANNELS` in rows
    of ``ceil(sqrt(channels))`` (NaN where the last row has no channel).

    >>> w = np.arange(2 * 2 * 1, dtype=np.float32).reshape(4, 1)  # 2 channels of 2x1
    >>> channel_tiles(w, 2, 2, 1)[:, :, 0].tolist()
    [[0.0, 2.0], [1.0, 3.0]]
    >>> channel_tiles(np.arange(5.0).reshape(5, 1), 5, 1, 1)[:, :, 0].tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, nan]]
    """
    n = w.shape[1]
    per_row = channels if channels <= SIDE_BY_SIDE_CHANNELS else math.ceil(
        math.sqrt(channels))
    rows = math.ceil(channels / per_row)
    grid = np.full((rows * per_row, h, wd, n), np.nan, dtype=np.float32)
    grid[:channels] = w.reshape(channels, h, wd, n)
    # (rows, per_row, h, wd, n) -> (rows, h, per_row, wd, n): channels left to right,
    # then down.
    grid = grid.reshape(rows, per_row, h, wd, n).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * h, per_row * wd, n)


def receptive_fields(weights: np.ndarray, image_shape: tuple[int, int], path: Path,
                     title: str = "") -> Path:
    """Tile each neuron's input weights, reshaped to ``image_shape``, into one near-square
    image; with several input channels (n_input a multiple of the image), a neuron's
    channel maps sit in its tile (:func:`channel_tiles`)."""
    w = np.asarray(weights, dtype=np.float32)  # stored as float16; imshow wants float32+
    h, wd = int(image_shape[0]), int(image_shape[1])
    if w.ndim != 2 or w.shape[0] % (h * wd) or not len(w):
        raise ValueError(f"weights of shape {w.shape} do not match (channels x {h * wd}, "
                         f"n_neurons) for image_shape {tuple(image_shape)}")
    tiles = channel_tiles(w, w.shape[0] // (h * wd), h, wd)
    h, wd, n = tiles.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    # One-pixel NaN gutters separate the tiles, drawn light grey: with white (the colour
    # of weight 0), a stack's nearly binary filters ran into each other.
    canvas = np.full((rows * (h + 1) - 1, cols * (wd + 1) - 1), np.nan, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        canvas[r * (h + 1): r * (h + 1) + h, c * (wd + 1): c * (wd + 1) + wd] = tiles[:, :, k]

    cmap = colormaps["hot_r"].with_extremes(bad="0.8")
    side = min(10.0, max(3.0, 0.6 * max(rows, cols) + 1.5))
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, label="weight")
    ax.set_title(_wrap(title or f"receptive fields ({n} neurons)"), fontsize=10)
    return save_figure(fig, path)


def confusion_matrix_plot(confusion: list[list[int]] | np.ndarray, path: Path, title: str = "") -> Path:
    """Annotated confusion counts: rows are true classes, columns predicted classes."""
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    cmap = colormaps["Blues"]
    norm = Normalize(0.0, max(float(cm.max()), 1.0) if cm.size else 1.0)
    side = max(3.5, 0.45 * k + 1.5)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap=cmap, norm=norm)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color=_text_colour(cmap, norm, float(cm[i, j])))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="count")
    ax.set_title(_wrap(title or "confusion matrix"), fontsize=10)
    return save_figure(fig, path)


def _record_factors(records: list[CellRecord]) -> list[str]:
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec.factors))
    return list(names)


def _choose_axes(df: pd.DataFrame, records: list[CellRecord], x: str, y: str,
                 facet: str | None) -> tuple[str, str]:
    """Keep x and y where they are columns; fill the others from the grid's varied factors."""
    if x in df.columns and y in df.columns:
        return x, y
    # Seeds are averaged over, so they make no useful axis; the facet already has a role.
    candidates = [f for f in _record_factors(records)
                  if f in df.columns and f not in ("seed", facet, x, y) and df[f].nunique() > 1]
    if not candidates:
        raise ValueError(f"cannot plot a heatmap: x={x!r} or y={y!r} is not a column and the "
                         f"records' factors {_record_factors(records)} have no other column "
                         f"with more than one level")
    chosen = [c if c in df.columns else None for c in (x, y)]
    for i, c in enumerate(chosen):
        if c is None and candidates:
            chosen[i] = candidates.pop(0)
    # With a single varied factor the other axis is the grid name: a one-row heatmap.
    new_x, new_y = (c if c is not None else "grid" for c in chosen)
    return new_x, new_y


def _levels_label(record: CellRecord) -> str:
    # "stage" (tuned grids) is a factor of the record, not a setting.
    return ", ".join(f"{f}={record.settings.get(f, getattr(record, f, None))}"
                     for f in record.factors)


def _best_record(records: list[CellRecord], readout: str
                 ) -> tuple[CellRecord, float] | None:
    best: tuple[CellRecord, float] | None = None
    for rec in sorted(records, key=lambda r: str(r.cell_id)):
        entry = rec.readouts.get(readout)
        acc = None if entry is None else entry.accuracy
        if rec.status is not Status.OK or acc is None or not np.isfinite(acc) \
                or not entry.confusion:
            continue
        if best is None or acc > best[1]:  # strict: ties go to the smallest cell_id
            best = (rec, float(acc))
    return best


def learning_curve(df: pd.DataFrame, *, x: str = "n_train", metric: str = "accuracy",
                   path: Path, title: str = "") -> Path:
    """Mean ``metric`` (with min-max over seeds) against ``x``, one line per readout."""
    _require_columns(df, x=x, metric=metric)
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for readout, part in df.groupby("readout") if "readout" in df.columns else [("", df)]:
        g = part.groupby(x)[metric].agg(["mean", "min", "max"]).sort_index()
        if g["mean"].notna().any():
            ax.plot(g.index, g["mean"], marker="o", label=str(readout))
            ax.fill_between(g.index, g["min"], g["max"], alpha=0.15)
    if pd.api.types.is_numeric_dtype(df[x]) and (df[x] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(title="readout", fontsize=8)
    ax.set_title(_wrap(title or f"{metric} against {x}"), fontsize=10)
    return save_figure(fig, path)


def training_curves(records: list[CellRecord], path: Path,
                    readouts: tuple[str, ...] = ("proportion_weighting", "linear"),
                    title: str = "") -> Path:
    """Test accuracy against training presentations from the records' ``curve`` points
    (``curve_every``): one line per cell without its seed (mean over seeds, min-max band)
    and readout."""
    groups: dict[str, list[CellRecord]] = {}
    for rec in records:
        if rec.status is Status.OK and rec.curve:
            label = ", ".join(f"{f}={rec.settings.get(f)}" for f in rec.factors if f != "seed")
            groups.setdefault(label, []).append(rec)
    if not groups:
        raise ValueError("no record has learning-curve points (set curve_every)")
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.subplots()
    styles = ("-", "--", ":", "-.")
    for g, (label, recs) in enumerate(sorted(groups.items())):
        colour = f"C{g}"
        for s, readout in enumerate(readouts):
            rows = [(p.train_samples, p.accuracy.get(readout))
                    for rec in recs for p in rec.curve]
            frame = pd.DataFrame(rows, columns=["samples", "acc"]).dropna()
            if frame.empty:
                continue
            stats = frame.groupby("samples")["acc"].agg(["mean", "min", "max"]).sort_index()
            seeds = f", {len(recs)} seeds" if len(recs) > 1 else ""
            ax.plot(stats.index, 100 * stats["mean"], marker="o", markersize=3, color=colour,
                    linestyle=styles[s % len(styles)], label=f"{label or 'cell'}{seeds}: {readout}")
            if len(recs) > 1:
                ax.fill_between(stats.index, 100 * stats["min"], 100 * stats["max"],
                                color=colour, alpha=0.12)
    ax.set_xlabel("training presentations (images; epochs run on)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(_wrap(title or "learning curves"), fontsize=10)
    return save_figure(fig, path)


def cell_fields(out_dir: Path, rec: CellRecord, fig_dir: Path) -> list[tuple[str, Path]]:
    """The receptive fields (input weights) and learned filters of one cell, from the
    arrays its run kept under ``out_dir``, drawn in ``fig_dir``: (what, path) pairs."""
    drawn = []
    rel = rec.artifacts.get("weights")
    if rel and (out_dir / rel).is_file():
        drawn.append(("receptive fields", receptive_fields(
            np.load(out_dir / rel), tuple(rec.image_shape),
            fig_dir / f"receptive_fields_{rec.key}.png",
            title=f"{rec.key}\n{_levels_label(rec)}")))
    # A conv / local layer keeps "filters"; a stack one "filters_<layer>" per conv layer.
    for name, rel in sorted(rec.artifacts.items()):
        if not (name == "filters" or name.startswith("filters_")) or not (
                out_dir / rel).is_file():
            continue
        filt = np.load(out_dir / rel)  # [n_filters, (channels,) k, k]
        layer = name.removeprefix("filters").lstrip("_")
        what = f"learned filters{f' of layer {layer}' if layer else ''}"
        drawn.append((what, receptive_fields(
            filt.reshape(len(filt), -1).T, filt.shape[-2:],
            fig_dir / f"{name}_{rec.key}.png",
            title=f"{what}, {rec.key}\n{_levels_label(rec)}")))
    return drawn


def plot_results(out_dir: Path, *, x: str = "encoder", y: str = "rule", facet: str | None = "neuron",
                 metric: str = "accuracy", readout: str = "proportion_weighting",
                 fields: str = "all", curve: str | None = None,
                 fig_dir: Path | None = None) -> list[Path]:
    """Write the heatmap, receptive fields / filters and the best cell's confusion matrix.

    Figures go to ``fig_dir``, by default ``out_dir/figures``. If x or y is not a column, the records' first
    factors (other than seed) with more than one level are used instead. ``fields``:
    ``all`` draws every stored cell's receptive fields (or filters), ``best`` only the
    best cell's (by ``readout``) and the best of each architecture, ``none`` none.
    ``curve`` also draws ``metric`` against that factor (e.g. ``n_train``). Records
    with learning-curve points (``curve_every``) get ``curve_training.png``.
    """
    if fields not in ("all", "best", "none"):
        raise ValueError(f"fields = {fields!r}; allowed: all, best, none")
    out_dir = Path(out_dir)
    fig_dir = out_dir / FIGURES_DIR if fig_dir is None else Path(fig_dir)
    df = results.read_table(out_dir)
    records = results.load_records(out_dir)
    if not records:
        raise ValueError(f"no cell records under {out_dir / results.CELLS_DIR}")

    hx, hy = _choose_axes(df, records, x, y, facet)
    hfacet = facet if facet is not None and facet in df.columns and facet not in (hx, hy) else None
    written = []
    # A tuned grid's table holds two stages of every cell: averaging them would mean
    # nothing, so its heatmaps are drawn per stage by stdp_bench.tune_plots.
    if "stage" not in df.columns:
        written.append(heatmaps(df, x=hx, y=hy, facet=hfacet, metric=metric,
                                readout=readout,
                                path=fig_dir / f"heatmap_{metric}_{readout}.png"))

    if curve is not None:
        written.append(learning_curve(df, x=curve, metric=metric,
                                      path=fig_dir / f"curve_{metric}_{curve}.png",
                                      title=f"{metric} against {curve} ({records[0].grid})"))
    if any(r.curve for r in records):
        # The readout asked for, and the linear probe beside it where cells have one (a
        # decision stack's spike counts say nothing: it is read by its decision).
        written.append(training_curves(records, fig_dir / "curve_training.png",
                                       readouts=tuple(dict.fromkeys((readout, "linear"))),
                                       title=f"test accuracy during training "
                                             f"({records[0].grid})"))
    chosen = records
    if fields == "none":
        chosen = []
    elif fields == "best":
        keep = set()
        by_arch: dict[object, list[CellRecord]] = {}
        for rec in records:
            by_arch.setdefault(rec.settings.get("architecture"), []).append(rec)
        for group in by_arch.values():
            top = _best_record(group, readout) or _best_record(group, "linear")
            if top is not None:
                keep.add(top[0].key)
        chosen = [r for r in records if r.key in keep]
    for rec in chosen:
        written.extend(path for _, path in cell_fields(out_dir, rec, fig_dir))

    best = _best_record(records, readout)
    if best is not None:
        rec, acc = best
        written.append(confusion_matrix_plot(
            rec.readouts[readout].confusion, fig_dir / "confusion_best.png",
            title=f"best {readout}: {100 * acc:.1f}% ({rec.cell_id})\n{_levels_label(rec)}"))
    return written


def scaling_figure(result: dict, path: Path) -> Path:
    """Samples per second against excitatory neurons (log-log), ours and stock BindsNET,
    training and evaluation, from a :func:`stdp_bench.bench.run_scaling` result."""
    sizes = list(result["neurons"])
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    series = (("train_sps", "ours, train", "tab:blue", "-"),
              ("eval_sps", "ours, eval", "tab:blue", "--"),
              ("stock_train_sps", "stock BindsNET, train", "tab:gray", "-"),
              ("stock_eval_sps", "stock BindsNET, eval", "tab:gray", "--"))
    for key, name, colour, style in series:
        pts = [(n, result[f"{key}_n{n}"]) for n in sizes if f"{key}_n{n}" in result]
        if pts:
            ax.plot(*zip(*pts), marker="o", color=colour, linestyle=style, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("excitatory neurons")
    ax.set_ylabel("samples / s (one network)")
    ax.set_title(_wrap(f"Diehl & Cook network, {result['time_steps']} steps per sample\n"
                       f"{result['device']}", 70), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
