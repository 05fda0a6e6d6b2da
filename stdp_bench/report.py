"""One self-contained HTML page for results folders (``stdp-bench report``).

The page is built from what a run recorded (cell records, the tidy table, the study of a
tuned grid, model files where they were kept), never from a training loop: the figures
``stdp-bench plot`` draws, embedded as PNG data, the summary that ``show`` prints, where
the numbers come from (commits, versions, engines, devices, wall times) and a section
per cell. Jinja2 renders it (``templates/report.html.j2``): a well-kept templating
library escapes every value, where hand-built strings would each need it.

>>> from pathlib import Path
>>> data_uri(Path("missing.png")) is None
True
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stdp_bench import results
from stdp_bench.config import ConfigError
from stdp_bench.records import CellRecord, Status
from stdp_bench.table_views import group_columns, summary_table

# Cells that get figures of their own (the best by the headline readout): a page with a
# figure for each of a large grid's cells would run to tens of megabytes.
CELL_FIGURES = 12


@dataclass
class Figure:
    title: str
    uri: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]


@dataclass
class CellView:
    key: str
    label: str
    status: str
    error: str | None
    accuracies: list[tuple[str, str]]
    metrics: list[tuple[str, str]]
    provenance: list[tuple[str, str]]
    confusion: list[list[int]] | None
    curve: Table | None
    figures: list[Figure] = field(default_factory=list)


@dataclass
class FolderView:
    path: str
    grid: str
    grid_text: str
    statuses: list[tuple[str, int]]
    provenance: list[tuple[str, str]]
    summary: Table
    figures: list[Figure]
    cells: list[CellView]


def data_uri(path: Path) -> str | None:
    """The PNG at ``path`` as a ``data:`` URI (None if there is no such file)."""
    if not Path(path).is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(df: pd.DataFrame) -> Table:
    return Table([str(c) for c in df.columns],
                 [[_fmt(v) for v in row] for row in df.itertuples(index=False)])


def _summary(out_dir: Path, records: list[CellRecord]) -> Table:
    """``stdp-bench show``'s table, every readout: seeds aggregated, mean and 95% interval."""
    table = results.read_table(out_dir)
    factors = list(records[0].factors) if records else []
    return _table(summary_table(table, group_columns(factors, table) + ["readout"]))


def _span(records: list[CellRecord]) -> str:
    """First start to last end of the records (a resumed run's pauses included)."""
    starts = [r.provenance.started for r in records if r.provenance.started]
    ends = [r.provenance.ended for r in records if r.provenance.ended]
    if not starts or not ends:
        return "not recorded"
    first, last = min(starts), max(ends)
    hours = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return f"{first} to {last} ({hours / 3600:.2f} h)"


def _provenance(records: list[CellRecord]) -> list[tuple[str, str]]:
    def levels(values) -> str:
        return ", ".join(sorted({str(v) for v in values if v not in (None, "")})) or "-"

    versions = {f"{k} {v}" for r in records for k, v in r.provenance.versions.items()}
    return [("commits", levels(r.provenance.commit for r in records)),
            ("engines", levels(r.provenance.engine for r in records)),
            ("devices", levels(r.provenance.device for r in records)),
            ("versions", levels(versions)),
            ("seeds", levels(r.provenance.seed for r in records)),
            ("wall time", _span(records))]


def _threshold_figure(out_dir: Path, rec: CellRecord, fig_dir: Path) -> Figure | None:
    """A histogram of the cell's adaptive thresholds (theta), from its model file."""
    from stdp_bench.model_file import ModelFileError, read_model, split_arrays

    rel = rec.artifacts.get("model")
    if not rel:
        return None
    try:
        state, _ = split_arrays(read_model(out_dir / rel)[1])
    except ModelFileError:
        return None
    theta = state.get("theta")
    if theta is None or not np.any(theta):
        return None
    import matplotlib.pyplot as plt

    from stdp_bench.plots import save_figure

    fig, ax = plt.subplots(figsize=(4, 2.6))
    ax.hist(np.ravel(theta), bins=40, color="#4c72b0")
    ax.set_xlabel("theta (mV above the threshold)")
    ax.set_ylabel("neurons")
    path = save_figure(fig, fig_dir / f"theta_{rec.key}.png")
    return Figure("threshold distribution", data_uri(path) or "")


def _cell_figures(out_dir: Path, rec: CellRecord, fig_dir: Path) -> list[Figure]:
    from stdp_bench.plots import cell_fields

    figures = [Figure(what, data_uri(path) or "")
               for what, path in cell_fields(out_dir, rec, fig_dir)]
    theta = _threshold_figure(out_dir, rec, fig_dir)
    return figures + ([theta] if theta else [])


def _cell_view(rec: CellRecord, readout: str) -> CellView:
    label = ", ".join(f"{f}={rec.settings.get(f)}" for f in rec.factors) or rec.cell_id
    if rec.stage:
        label += f" ({rec.stage})"
    score = rec.readouts.get(readout)
    curve = None
    if rec.curve:
        names = sorted({n for p in rec.curve for n in p.accuracy})
        curve = Table(["training samples", *names],
                      [[str(p.train_samples), *(_fmt(p.accuracy.get(n, np.nan)) for n in names)]
                       for p in rec.curve])
    prov = rec.provenance
    return CellView(
        key=rec.key, label=label, status=rec.status.value, error=rec.error,
        accuracies=[(name, _fmt(s.accuracy)) for name, s in rec.readouts.items()],
        metrics=[(k, _fmt(v)) for k, v in rec.metrics.items()],
        provenance=[("seed", str(prov.seed)), ("engine", prov.engine or "-"),
                    ("commit", prov.commit or "-"), ("started", prov.started or "-"),
                    ("ended", prov.ended or "-")],
        confusion=score.confusion if score is not None else None, curve=curve)


def folder_view(out_dir: Path, fig_dir: Path, readout: str = "proportion_weighting"
                ) -> FolderView:
    """Everything the page shows of one results folder; figures are drawn in ``fig_dir``."""
    from stdp_bench.plots import plot_results
    from stdp_bench.tune_plots import plot_tuning

    out_dir = Path(out_dir)
    if not (out_dir / results.CELLS_DIR).is_dir():
        raise ConfigError(f"{out_dir} has no cells/ folder: not a results folder")
    records = results.load_records(out_dir)
    if not records:
        raise ConfigError(f"{out_dir}: no cell records under cells/")
    paths = plot_results(out_dir, readout=readout, fields="none", fig_dir=fig_dir)
    if (out_dir / results.STUDY_DB).is_file():
        paths += plot_tuning(out_dir, readout=readout, fig_dir=fig_dir)
    figures = [Figure(p.stem.replace("_", " "), data_uri(p) or "") for p in paths]
    ranked = sorted(records, key=lambda r: -(r.accuracy(readout) or r.accuracy("linear")
                                             or 0.0))
    with_figures = {r.key for r in ranked[:CELL_FIGURES]}
    cells = []
    for rec in ranked:
        view = _cell_view(rec, readout)
        if rec.key in with_figures:
            view.figures = _cell_figures(out_dir, rec, fig_dir)
        cells.append(view)
    counts = pd.Series([r.status.value for r in records]).value_counts()
    grid_file = out_dir / "grid.toml"
    return FolderView(path=str(out_dir), grid=records[0].grid,
                      grid_text=grid_file.read_text() if grid_file.is_file() else "",
                      statuses=[(s.value, int(counts.get(s.value, 0))) for s in Status
                                if counts.get(s.value, 0)],
                      provenance=_provenance(records),
                      summary=_summary(out_dir, records),
                      figures=figures, cells=cells)


def build_report(results_dirs: list[Path], out: Path,
                 readout: str = "proportion_weighting") -> Path:
    """Write the page for ``results_dirs`` (one section each) to ``out``; returns it."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    with tempfile.TemporaryDirectory() as tmp:
        folders = [folder_view(d, Path(tmp) / str(i), readout)
                   for i, d in enumerate(results_dirs)]
    env = Environment(loader=PackageLoader("stdp_bench", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        folders=folders, readout=readout,
        title="stdp_bench report: " + ", ".join(f.grid for f in folders))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
