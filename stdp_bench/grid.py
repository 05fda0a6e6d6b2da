"""Expand a grid into cells and group compatible cells into jobs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from stdp_bench.cell_checks import check_cell
from stdp_bench.config import CellConfig, ConfigError, make_cell
from stdp_bench.grid_file import GridSpec
from stdp_bench.records import record_key
from stdp_bench.trainers import trainer_of

# Settings that fix tensor shapes and the sample schedule: cells that agree on all of
# them can be trained together as independent replicas in one job.
SHAPE_KEYS = ("family", "architecture", "dataset", "color", "preprocess", "split",
              "label_source",
              "n_neurons", "time", "dt",
              "n_train", "n_label", "n_test", "epochs", "ngram_n", "curve_every")


@dataclass(frozen=True)
class Cell:
    """One point of the factorial product."""

    config: CellConfig
    levels: tuple[tuple[str, object], ...]  # (factor, level) pairs, in grid order
    # Tuned grids run each cell twice, at its default and at its tuned settings; the
    # two can coincide, so the stage is part of the record's key but not of the id.
    stage: str | None = None

    @property
    def cell_id(self) -> str:
        """Stable id of the resolved settings."""
        return self.config.cell_id()

    @property
    def record_key(self) -> str:
        """Name of the cell's record: its id, prefixed by its stage when it has one."""
        return record_key(self.cell_id, self.stage)


@dataclass(frozen=True)
class Job:
    """The unit a runner schedules: cells sharing shapes, trained as replicas."""

    cells: tuple[Cell, ...]

    @property
    def job_id(self) -> str:
        """Id made of its cells' ids (order matters for nothing but naming)."""
        return "+".join(c.record_key for c in self.cells)[:64]


def expand(grid: GridSpec) -> list[Cell]:
    """Cartesian product of the grid's factors over its fixed settings, less the
    combinations its ``exclude`` entries name."""
    names = list(grid.factors)
    cells = []
    for combo in itertools.product(*(grid.factors[n] for n in names)):
        if grid.excludes(dict(zip(names, combo))):
            continue
        cfg = make_cell({**grid.settings, **dict(zip(names, combo))})
        check_cell(cfg, f"grid '{grid.name}', cell {dict(zip(names, combo)) or 'settings'}")
        cells.append(Cell(config=cfg, levels=tuple(zip(names, combo))))
    if not cells:
        empty = [n for n in names if not grid.factors[n]]
        if not empty:
            raise ConfigError(f"grid '{grid.name}': 'exclude' leaves out every cell")
        raise ConfigError(f"grid '{grid.name}': factor {', '.join(map(repr, empty))} has no "
                          "levels, so the grid has no cells")
    return cells


def group_jobs(cells: list[Cell], max_replicas: int = 64, engine: str = "kernel"
               ) -> list[Job]:
    """Group cells whose shapes agree into jobs of at most ``max_replicas`` cells; cells
    whose trainer gives them an engine of their own (``group_key`` None under ``engine``,
    ``Execution.engine``) get a job each."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        extra = trainer_of(cell.config).group_key(cell.config, engine)
        key = ((cell.cell_id,) if extra is None
               else tuple(getattr(cell.config, k) for k in SHAPE_KEYS) + extra)
        groups.setdefault(key, []).append(cell)
    jobs = []
    for members in groups.values():
        for i in range(0, len(members), max_replicas):
            jobs.append(Job(cells=tuple(members[i:i + max_replicas])))
    return jobs
