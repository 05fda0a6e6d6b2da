"""Published cell ids stay what they were: every committed record under results/ still
gets its id, its seed and its grid.

A cell's id names its record and, with the seed factor, seeds its network
(``replica_params.replica_seed``). Adding a setting without appending it to
``config.LATE_FIELDS``, removing a name from that list or changing a default would give
every published cell a new id: its record orphaned, its network seeded differently.
Records are read as they are: older ones lack the settings added after them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from stdp_bench.config import make_cell
from stdp_bench.grid import expand
from stdp_bench.grid_file import grids_dir, load_grid
from stdp_bench.replica_params import AFTER_TRAINING, replica_seed
from stdp_bench.records import record_key

ROOT = Path(__file__).resolve().parents[1]


def _committed_folders() -> list[Path]:
    """Results folders whose grid.toml is committed (a developer's own runs are not)."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "results/*/grid.toml"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        # Not a git checkout: only the shipped folders are here.
        return sorted(p.parent for p in (ROOT / "results").glob("*/grid.toml"))
    return sorted((ROOT / line).parent for line in out.splitlines())


FOLDERS = _committed_folders()
SHIPPED_GRIDS = sorted(grids_dir().glob("*.toml"))


def _records(folder: Path) -> dict[str, dict]:
    """File stem -> record, for every record of a results folder."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))}


def _network_seed(network_id: str, seed: int) -> int:
    # Written out here rather than called, so that changing the derivation fails.
    digest = hashlib.sha256(f"{network_id}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def test_published_folders_are_found():
    assert {"dc2015", "dc2015_triplet", "dc2015_large", "factorial", "factorial_tuned",
            "learning_curve", "baselines", "conv", "conv_learning"} <= {f.name for f in FOLDERS}
    assert all(_records(f) for f in FOLDERS)
    assert {"smoke", "classic", "factorial", "factorial_tuned"} <= {p.stem for p in SHIPPED_GRIDS}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_records_rebuild_their_cell_ids(folder):
    # Settings a record lacks (added after it was written) take their defaults.
    wrong = []
    for stem, rec in _records(folder).items():
        got = make_cell(rec["settings"]).cell_id()
        if not (got == rec["cell_id"] == rec["provenance"]["config_hash"]
                and stem == record_key(rec["cell_id"], rec.get("stage"))):
            wrong.append(f"{stem}.json: rebuilt id {got}")
    assert not wrong, f"{folder.name}: {len(wrong)} records no longer get their id: {wrong[:5]}"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_records_keep_their_network_seeds(folder):
    wrong = []
    for stem, rec in _records(folder).items():
        cfg = make_cell(rec["settings"])
        seed = rec["provenance"]["seed"]
        # A learning curve only adds measurements, and settling and calibrating
        # thresholds act after training: the network is the cell's without them, so the
        # seed comes from that cell's id.
        network_id = (rec["cell_id"]
                      if all(getattr(cfg, k) == v for k, v in AFTER_TRAINING.items())
                      else make_cell({**rec["settings"], **AFTER_TRAINING}).cell_id())
        if not (seed == rec["settings"]["seed"] == cfg.seed
                and replica_seed(cfg) == _network_seed(network_id, seed)):
            wrong.append(stem)
    assert not wrong, f"{folder.name}: seeds changed for {wrong[:5]}"


@pytest.mark.parametrize("path", SHIPPED_GRIDS, ids=lambda p: p.stem)
def test_shipped_grids_expand_to_distinct_cells(path):
    ids = [c.cell_id for c in expand(load_grid(path))]
    assert ids and len(set(ids)) == len(ids)


def _tuned_ids(folder: Path, default_cells: list) -> set[str]:
    """Ids of a tuned grid's cells at their best trial's settings (``best.json``)."""
    best = json.loads((folder / "best.json").read_text()).values()
    out = set()
    for cell in default_cells:
        [params] = [b["params"] for b in best
                    if all(getattr(cell.config, k) == v for k, v in b["levels"].items())]
        out.add(cell.config.with_settings(**params).cell_id())
    return out


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_records_come_from_their_grid(folder):
    # The folder's grid.toml is the grid as run (overrides included); the shipped grid of
    # that name must still produce the published cells too.
    grid = load_grid(folder / "grid.toml")
    cells = expand(grid)
    ids = {c.cell_id for c in cells}
    shipped = grids_dir() / f"{grid.name}.toml"
    assert shipped.exists(), f"{folder.name}: no shipped grid named {grid.name!r}"
    shipped_ids = {c.cell_id for c in expand(load_grid(shipped))}
    by_stage: dict[str | None, set[str]] = {}
    for rec in _records(folder).values():
        by_stage.setdefault(rec.get("stage"), set()).add(rec["cell_id"])
    assert set(by_stage) in ({None}, {"default", "tuned"})
    plain = by_stage.get(None, set()) | by_stage.get("default", set())
    assert plain <= ids, f"{folder.name}: not cells of its grid.toml: {sorted(plain - ids)[:5]}"
    assert plain <= shipped_ids, (f"{folder.name}: not cells of {shipped.name}: "
                                  f"{sorted(plain - shipped_ids)[:5]}")
    if "tuned" in by_stage:
        tuned = _tuned_ids(folder, cells)
        assert by_stage["tuned"] <= tuned, (f"{folder.name}: tuned records not at best.json's "
                                            f"settings: {sorted(by_stage['tuned'] - tuned)[:5]}")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_committed_tables_are_what_their_records_rebuild(folder, tmp_path):
    """The committed table of every results folder is exactly (byte for byte, as CSV) the
    table its committed records rebuild: a change to the record layout or to ``tidy``
    that moved a published number or column would fail here."""
    import shutil

    from stdp_bench.results import rebuild_tables

    shutil.copytree(folder / "cells", tmp_path / "cells")
    rebuild_tables(tmp_path)
    assert (tmp_path / "results.csv").read_bytes() == (folder / "results.csv").read_bytes()
