"""The ``stdp-bench`` command line (Typer): run, tune, show, report, predict, plot, grids,
datasets, levels, bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stdp_bench.config import ConfigError
from stdp_bench.errors import OutputError
from stdp_bench.exiting import freeze_at_exit
from stdp_bench.grid_file import grids_dir, load_grid, resolve_grid_path
from stdp_bench.interrupts import Terminated, exit_code, sigterm_as_interrupt
from stdp_bench.overrides import apply_overrides
from stdp_bench.records import Status
from stdp_bench.table_views import filter_rows, group_columns, summary_table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Factorial STDP grids on BindsNET networks.")


def main() -> None:
    """The ``stdp-bench`` command (and ``python -m stdp_bench``): the app, in a process
    that exits without a last garbage collection (:func:`freeze_at_exit`)."""
    freeze_at_exit()
    app()


DEFAULT_GRID = "smoke"


# Options that run and tune share.
OutOption = Annotated[Optional[Path], typer.Option(help="Results folder (default results/NAME).")]
DataDirOption = Annotated[Optional[Path], typer.Option(
    help="Data root (else $STDP_BENCH_DATA, else ./data).")]
BackendOption = Annotated[str, typer.Option(
    help="local (this machine) or ray (Ray tasks; pip install 'stdp_bench\\[ray]').")]
WorkersOption = Annotated[int, typer.Option(
    help="local: jobs run at once in worker processes; ray: CPUs of a new local Ray "
         "instance.")]
AddressOption = Annotated[Optional[str], typer.Option(
    help="ray: cluster to join (auto or HOST:PORT); none starts a local instance.")]
QuietOption = Annotated[bool, typer.Option(
    help="No progress (a bar on a terminal, else a line every 5%).")]
ReplicasOption = Annotated[int, typer.Option(
    help="Most cells trained together as replicas in one job.")]
TensorBoardOption = Annotated[Optional[Path], typer.Option(
    help="Write TensorBoard event files of every cell's curve points here.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _stopped(interrupt: KeyboardInterrupt, saved: str) -> None:
    """One line for a run stopped by Ctrl-C or SIGTERM, and the shell's exit status."""
    how = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
    typer.secho(f"{how}: {saved}; rerun the same command to resume",
                fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(exit_code(interrupt))


DeviceOption = Annotated[str, typer.Option(
    help="auto (cuda when torch sees one, else cpu), cpu or cuda.")]
EngineOption = Annotated[str, typer.Option(
    help="auto, kernel (fused numba, CPU) or torch (BindsNET replica Network; the engine "
         "for cuda). Conv / local cells and baselines run on their own engines.")]


@app.command()
def run(
    grid: Annotated[str, typer.Argument(help="Grid TOML file or shipped grid name.")] = DEFAULT_GRID,
    out: OutOption = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="KEY=VALUE: override a setting or pin a factor; KEY=[a,b] makes a factor.")] = None,
    limit_train: Annotated[Optional[int], typer.Option(help="Cap n_train of every cell.")] = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    engine: EngineOption = "auto",
    replicas: ReplicasOption = 8,
    checkpoint_every: Annotated[int, typer.Option(
        help="Save a job's training state every N samples (0: every --checkpoint-minutes "
             "of wall time); a rerun of a killed run resumes from it.")] = 0,
    checkpoint_minutes: Annotated[float, typer.Option(
        help="With --checkpoint-every 0: minutes between checkpoints.")] = 5.0,
    backend: BackendOption = "local",
    workers: WorkersOption = 1,
    address: AddressOption = None,
    quiet: QuietOption = False,
    tensorboard: TensorBoardOption = None,
) -> None:
    """Run a grid (default: the shipped smoke grid); finished cells are skipped."""
    from stdp_bench.runner import run_grid

    try:
        from stdp_bench.execution import Execution

        execution = Execution.resolve(device, engine, checkpoint_every=checkpoint_every,
                                      checkpoint_minutes=checkpoint_minutes,
                                      tensorboard=tensorboard)
        spec = apply_overrides(load_grid(resolve_grid_path(grid)), set_ or [])
        out_dir = out or Path("results") / spec.name
        with sigterm_as_interrupt():
            table = run_grid(spec, out_dir, data_dir=data_dir, limit_train=limit_train,
                             max_replicas=replicas, progress=not quiet, execution=execution,
                             backend=backend, workers=workers, address=address)
    except (ConfigError, OutputError) as exc:
        _fail(exc)
        return
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        _stopped(exc, "finished cells are saved")
    _print_summary(table, spec.factors)
    typer.echo(f"results: {out_dir}/results.parquet ({len(table)} rows)")


@app.command()
def tune(
    grid: Annotated[str, typer.Argument(help="Grid TOML file with a \\[search] table, or a "
                                             "shipped grid name.")],
    out: OutOption = None,
    trials: Annotated[Optional[int], typer.Option(
        help="Trials per cell (overrides \\[search] trials; more extends a finished "
             "search).")] = None,
    limit_train: Annotated[Optional[int], typer.Option(
        help="Cap the rungs and the final runs' n_train.")] = None,
    data_dir: DataDirOption = None,
    backend: BackendOption = "local",
    workers: WorkersOption = 1,
    address: AddressOption = None,
    # A search trial is a cell: --replicas caps the search's tasks and the final jobs.
    replicas: ReplicasOption = 64,
    device: DeviceOption = "auto",
    engine: EngineOption = "auto",
    quiet: QuietOption = False,
    tensorboard: TensorBoardOption = None,
) -> None:
    """Tune every cell on a validation split (Optuna), then run default and tuned cells
    on the test split. Rerun the same command to resume."""
    from stdp_bench.results import compare_stages, STUDY_DB
    from stdp_bench.tuner import tune_grid

    try:
        from stdp_bench.execution import Execution

        execution = Execution.resolve(device, engine, tensorboard=tensorboard)
        spec = load_grid(resolve_grid_path(grid))
        out_dir = out or Path("results") / spec.name
        with sigterm_as_interrupt():
            outcome = tune_grid(spec, out_dir, data_dir=data_dir, limit_train=limit_train,
                                trials=trials, backend=backend, workers=workers,
                                address=address, max_replicas=replicas, progress=not quiet,
                                execution=execution)
    except (ConfigError, OutputError) as exc:
        _fail(exc)
        return
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        _stopped(exc, "finished trials and cells are saved")
    typer.echo(f"search: {outcome.trials} trials finished in this run ({outcome.pruned} "
               f"pruned, {outcome.failed} failed) in {outcome.search_seconds:.0f} s, "
               f"{outcome.samples_per_second:.0f} network-samples/s; {STUDY_DB} holds "
               + ", ".join(f"{n} {state}" for state, n in sorted(outcome.study_states.items())))
    table = outcome.table
    if not table.empty:
        by = group_columns(spec.factors, table)
        metric_rows = table[table["readout"] == outcome.metric]
        typer.echo(compare_stages(metric_rows, by).to_string(
            index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"results: {out_dir}/results.parquet ({len(table)} rows); trials: "
               f"{out_dir}/trials.parquet; studies: sqlite:///{out_dir}/{STUDY_DB}")


def _print_summary(table, factors) -> None:
    from stdp_bench.results import summarize

    if table.empty:
        return
    by = group_columns(factors, table) + ["readout"]
    typer.echo(summarize(table, by).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    bad = table[table["status"] != Status.OK.value].drop_duplicates("cell_id")
    for _, row in bad.iterrows():
        first = str(row.get("error") or "").strip().splitlines()
        typer.echo(f"cell {row['cell_id']}: {row['status']}: {first[-1] if first else ''}")


@app.command()
def show(
    results_dirs: Annotated[list[Path], typer.Argument(
        help="Results folder(s) of runs; several are stacked into one table.")],
    by: Annotated[Optional[list[str]], typer.Option(
        help="Columns to group by (repeatable); default: the grids' factors and readout.")] = None,
    metric: Annotated[str, typer.Option(help="Column to aggregate.")] = "accuracy",
    where: Annotated[Optional[list[str]], typer.Option(
        help="KEY=VALUE[,VALUE...] row filter (repeatable), e.g. --where n_neurons=100 "
             "--where readout=proportion_weighting,output.")] = None,
    top: Annotated[Optional[int], typer.Option(
        help="Only the N groups with the highest mean.")] = None,
) -> None:
    """Tidy table aggregated over seeds: mean and 95% interval."""
    import pandas as pd

    from stdp_bench.results import load_records, read_table

    try:
        tables, factors = [], []
        for results_dir in results_dirs:
            if not (results_dir / "cells").exists():
                raise ConfigError(f"{results_dir} has no cells/ folder: not a results folder")
            tables.append(read_table(results_dir))
            records = load_records(results_dir)
            for f in (records[0].factors if records else []):
                if f not in factors:
                    factors.append(f)
        table = pd.concat(tables, ignore_index=True)
        table = filter_rows(table, where or [])
        if not by:
            by = group_columns(factors, table) + ["readout"]
        summary = summary_table(table, by, metric)
        if top is not None:
            summary = summary.head(top)  # both tables come sorted, best first
        typer.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    except (ConfigError, ValueError) as exc:
        _fail(exc)


@app.command()
def report(
    results_dirs: Annotated[list[Path], typer.Argument(
        help="Results folder(s) of run or tune; one section each.")],
    out: Annotated[Optional[Path], typer.Option(
        help="The HTML file (default: report.html in the first folder).")] = None,
    readout: Annotated[str, typer.Option(help="The headline readout.")] = "proportion_weighting",
) -> None:
    """One self-contained HTML page: provenance, summary, figures and every cell."""
    from stdp_bench.report import build_report

    try:
        path = build_report(results_dirs, out or results_dirs[0] / "report.html", readout)
    except (ConfigError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
def predict(
    results_dir: Annotated[Path, typer.Argument(help="A results folder (run or tune).")],
    cell: Annotated[Optional[str], typer.Option(
        help="Only this cell (its record name, or the start of it).")] = None,
    data_dir: DataDirOption = None,
    split: Annotated[str, typer.Option(
        help="test: the samples each cell was scored on (its record's accuracies are "
             "shown beside); train: its labelling samples.")] = "test",
    readout: Annotated[Optional[str], typer.Option(help="Only this readout.")] = None,
    n_label: Annotated[Optional[int], typer.Option(
        help="Fit the readouts again on this many labelling samples, chosen as each "
             "cell's label_source chooses them (train: the last N of its training order; "
             "60000 on MNIST is Diehl & Cook's whole training set), before scoring.")
    ] = None,
    threshold_calibration: Annotated[Optional[str], typer.Option(
        help="Set each network's adaptive thresholds from its weights first (weight_norm; "
             "the threshold_calibration setting), then fit its readouts again (on "
             "--n-label samples, else its own labelling samples).")] = None,
) -> None:
    """Reload saved cells from their model files and score them again."""
    from stdp_bench.config import SETTINGS
    from stdp_bench.model_file import ModelFileError
    from stdp_bench.rescore import rescore

    try:
        if n_label is not None:
            SETTINGS["n_label"].check(n_label, "--n-label")
        if threshold_calibration is not None:  # before any model file is read
            SETTINGS["threshold_calibration"].check(threshold_calibration,
                                                    "--threshold-calibration")
        table = rescore(results_dir, cell=cell, data_dir=data_dir, split=split,
                        readout=readout, n_label=n_label,
                        threshold_calibration=threshold_calibration)
    except (ConfigError, ModelFileError) as exc:
        _fail(exc)
        return
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    compared = table["equal"].notna()
    if split == "test" and compared.any():
        # Rows refitted on another number of labelling samples have nothing to equal.
        differ = int((~table.loc[compared, "equal"].astype(bool)).sum())
        n = int(compared.sum())
        typer.echo(f"{n - differ} of {n} accuracies equal the records'"
                   + (f"; {differ} differ" if differ else ""))
        if differ:
            raise typer.Exit(1)


@app.command()
def plot(
    results_dir: Annotated[Path, typer.Argument(help="Results folder of a run.")],
    x: Annotated[str, typer.Option(help="Factor on the x axis.")] = "encoder",
    y: Annotated[str, typer.Option(help="Factor on the y axis.")] = "rule",
    facet: Annotated[Optional[str], typer.Option(help="One panel per level of this factor.")] = "neuron",
    metric: Annotated[str, typer.Option(help="Column to plot.")] = "accuracy",
    readout: Annotated[str, typer.Option(help="Readout whose rows are plotted.")] = "proportion_weighting",
    fields: Annotated[str, typer.Option(
        help="Receptive fields / filters of all cells, of the best cell per architecture "
             "(best), or none.")] = "all",
    curve: Annotated[Optional[str], typer.Option(
        help="Also plot the metric against this factor, e.g. n_train.")] = None,
) -> None:
    """Accuracy heatmaps, receptive fields and the best cell's confusion matrix (PNG)."""
    from stdp_bench.plots import plot_results
    from stdp_bench.results import STUDY_DB
    from stdp_bench.tune_plots import plot_tuning

    try:
        if not (results_dir / "cells").exists():
            raise ConfigError(f"{results_dir} has no cells/ folder: not a results folder")
        paths = plot_results(results_dir, x=x, y=y, facet=facet, metric=metric,
                             readout=readout, fields=fields, curve=curve)
        if (results_dir / STUDY_DB).is_file():
            paths += plot_tuning(results_dir, x=x, y=y, facet=facet, readout=readout)
    except (ConfigError, ValueError) as exc:
        _fail(exc)
        return
    for p in paths:
        typer.echo(str(p))


@app.command()
def grids() -> None:
    """List the shipped grid files with their cell counts."""
    from stdp_bench.grid import expand

    for path in sorted(grids_dir().glob("*.toml")):
        spec = load_grid(path)
        typer.echo(f"{path.stem:<12} {len(expand(spec)):>5} cells  {spec.description}")


@app.command()
def datasets(data_dir: DataDirOption = None) -> None:
    """Every dataset: input shape, classes, and whether its files are under the data root."""
    from stdp_bench.data import data_root
    from stdp_bench.data_sources import dataset_lines

    typer.echo("\n".join(dataset_lines(data_root(data_dir))))


@app.command()
def levels(
    axis: Annotated[Optional[str], typer.Argument(
        help="Only this axis (encoder, neuron, rule, architecture, readout, dataset).")] = None,
    plugin: Annotated[Optional[list[str]], typer.Option(
        help="Import this level module first (as a grid's plugins = [...] does).")] = None,
) -> None:
    """Every level of every axis: where it runs, its settings (unit, default, range), doc.

    Levels of installed plugins (entry points ``stdp_bench.levels``) are listed too.
    """
    from stdp_bench.config import SETTINGS
    from stdp_bench.levels import registry
    from stdp_bench.levels.spec import AXES

    try:
        registry.load_plugins(plugin or [], where="--plugin")
        if axis is not None and axis not in AXES:
            raise ConfigError(f"axis {axis!r} is not allowed; allowed: {', '.join(AXES)}")
    except ConfigError as exc:
        _fail(exc)
        return
    for ax in AXES if axis is None else (axis,):
        typer.echo(f"{ax}:")
        for level in registry.levels(ax):
            steps = ax in ("encoder", "neuron", "rule")  # the axes engines compose
            engines = [e for e, ok in (("kernel", level.kernel), ("torch", level.torch))
                       if ok and steps]
            where = f"[{', '.join(engines)}]" if engines else ""
            typer.echo(f"  {level.name:<22}{where:<17}{level.doc}")
            if level.module.split(".")[:2] != ["stdp_bench", "levels"]:
                typer.echo(f"  {'':<22}plugin: {level.module}")
            for p in level.params:
                typer.echo(f"  {'':<22}+ {p.describe()}")
            if level.uses:
                shared = ", ".join(SETTINGS[n].brief() for n in level.uses if n in SETTINGS)
                typer.echo(f"  {'':<22}uses: {shared}")
            for lower, upper, why in level.orderings:
                typer.echo(f"  {'':<22}needs: {lower} < {upper} ({why})")


@app.command()
def bench(
    replicas: Annotated[int, typer.Option(
        help="Replicas trained together (cells of the factorial grid).")] = 45,
    samples: Annotated[int, typer.Option(
        help="Training samples per replica in the R-replica run.")] = 500,
    samples_r1: Annotated[int, typer.Option(
        help="Training samples of the single classic replica.")] = 2000,
    eval_samples: Annotated[int, typer.Option(
        help="Evaluation samples per replica.")] = 2000,
    stock_samples: Annotated[int, typer.Option(
        help="Timed samples of stock BindsNET (train and eval each).")] = 30,
    stock_eval_samples: Annotated[Optional[int], typer.Option(
        help="conv / local: BindsNET's timed evaluation samples, one batched run "
             "(default: --stock-samples, at least 200).")] = None,
    data_dir: DataDirOption = None,
    device: Annotated[str, typer.Option(
        help="auto, cpu or cuda (cuda: stock BindsNET and our torch replica engine on the "
             "GPU; cpu: ours is the fused kernel).")] = "auto",
    dataset: Annotated[str, typer.Option(help="mnist, or digits for a quick offline run.")] = "mnist",
    neurons: Annotated[Optional[str], typer.Option(
        help="Comma-separated network sizes, e.g. 100,400,1600,6400: time one network at "
             "each size instead of the R-replica run (at 100 neurons 5x --samples-r1 "
             "training and 10x --eval-samples evaluation samples, shrinking with size).")] = None,
    stock_max_neurons: Annotated[int, typer.Option(
        help="With --neurons: the largest size stock BindsNET is timed at.")] = 6400,
    figure: Annotated[Optional[Path], typer.Option(
        help="With --neurons: write the scaling figure (PNG) here.")] = None,
    architecture: Annotated[str, typer.Option(
        help="dc2015 (the replica kernel), or conv / local: the conv grid's layer on "
             "BindsNET vs the map kernel (--samples, --eval-samples, --stock-samples "
             "apply), or kheradpisheh: the kheradpisheh2018 grid's stack per layer, the "
             "stack kernel vs its dense torch twin (--samples, --eval-samples, and "
             "--stock-samples for the twin).")] = "dc2015",
) -> None:
    """Throughput of stock BindsNET vs the fused kernel; the last line is JSON."""
    import json

    from stdp_bench.bench import (format_scaling, format_table, parse_sizes, run_bench,
                                    run_scaling)

    try:
        if architecture == "kheradpisheh":
            from stdp_bench.stack_bench import format_stack_table, run_stack_bench

            result = run_stack_bench(samples=samples, eval_samples=eval_samples,
                                     torch_samples=stock_samples, data_dir=data_dir,
                                     dataset=dataset)
            table = format_stack_table(result)
        elif architecture != "dc2015":
            from stdp_bench.map_bench import format_map_table, run_map_bench

            result = run_map_bench(architecture, samples=samples, eval_samples=eval_samples,
                                   stock_samples=stock_samples,
                                   stock_eval_samples=stock_eval_samples,
                                   data_dir=data_dir, dataset=dataset)
            table = format_map_table(result)
        elif stock_eval_samples is not None:
            raise ConfigError("--stock-eval-samples needs --architecture conv or local")
        elif neurons is None:
            if figure is not None:
                raise ConfigError("--figure needs --neurons (it plots the scaling run)")
            result = run_bench(replicas=replicas, samples=samples, samples_r1=samples_r1,
                               eval_samples=eval_samples, stock_samples=stock_samples,
                               data_dir=data_dir, device=device, dataset=dataset)
            table = format_table(result, samples_r1=samples_r1, eval_samples=eval_samples)
        else:
            result = run_scaling(parse_sizes(neurons), samples_r1=samples_r1,
                                 eval_samples=eval_samples, stock_samples=stock_samples,
                                 stock_max_neurons=stock_max_neurons, data_dir=data_dir,
                                 device=device, dataset=dataset)
            table = format_scaling(result)
    except ConfigError as exc:
        _fail(exc)
        return
    typer.echo(table)
    if figure is not None:
        from stdp_bench.plots import scaling_figure

        typer.echo(f"figure: {scaling_figure(result, figure)}")
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    app()
