"""Numeric settings the engines cannot hold, or that mean nothing physically, are refused
at the edge with the key, the value and the allowed range; every published setting still
validates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stdp_bench.cell_checks import check_cell
from stdp_bench.cli import app
from stdp_bench.config import ConfigError, SETTINGS, check_value, make_cell
from stdp_bench.grid import expand
from stdp_bench.grid_file import grids_dir, load_grid, parse_grid
from stdp_bench.levels.spec import Param
from stdp_bench.overrides import apply_overrides
from stdp_bench.search_space import parse_search

ROOT = Path(__file__).resolve().parents[1]
F32_MAX = "3.4028234663852886e+38"


def _settings(**settings) -> None:
    parse_grid({"name": "g", "settings": settings})


def _expand(**settings) -> None:
    expand(parse_grid({"name": "g", "settings": settings}))


def _set(item: str) -> None:
    apply_overrides(parse_grid({"name": "g"}), [item])


@pytest.mark.parametrize("act, message", [
    (lambda: _settings(inh=1e300),
     f"grid [settings]: 'inh' = 1e+300 must be at most {F32_MAX} (the engine holds it as "
     "float32)"),
    (lambda: _settings(thresh_mv=-1e39),
     f"grid [settings]: 'thresh_mv' = -1e+39 must be at least -{F32_MAX} mV (the engine "
     "holds it as float32)"),
    (lambda: _settings(nu_pre=1e-40),
     "grid [settings]: 'nu_pre' = 1e-40 must be 0 or at least 1.1754943508222875e-38 in "
     "magnitude (the engine holds it as float32)"),
    (lambda: _settings(inh=10 ** 400),
     f"grid [settings]: 'inh' = {10 ** 400!r} must be a finite number"),
    (lambda: Param("n_inputs", 1, dtype="int32").check(2 ** 31, "grid [settings]"),
     "grid [settings]: 'n_inputs' = 2147483648 must be at most 2147483647 (the engine "
     "holds it as int32)"),
    (lambda: _expand(time=100_000, dt=1e-5),
     "grid 'g', cell settings: time = 100000 / dt = 1e-05 is 10000000000 steps; the "
     "engines count at most 2147483647 (int32 step indices)"),
    (lambda: _set("seed=4294967296"),
     "--set seed=4294967296: 'seed' = 4294967296 must be at most 4294967295 (the engine "
     "holds it as uint32)"),
    (lambda: _settings(min_spikes=2 ** 63),
     "grid [settings]: 'min_spikes' = 9223372036854775808 must be at most "
     "9223372036854775807 (the engine holds it as int64)"),
    (lambda: _settings(max_retries=2 ** 23),
     "grid [settings]: 'max_retries' = 8388608 must be at most 8388607"),
    (lambda: _settings(surrogate_beta=1.5),
     "grid [settings]: 'surrogate_beta' = 1.5 must be at most 1.0"),
    (lambda: _settings(surrogate_beta=-0.1),
     "grid [settings]: 'surrogate_beta' = -0.1 must be at least 0.0"),
    (lambda: _expand(time=10, dt=20.0),
     "grid 'g', cell settings: dt = 20.0 is above time = 10; a presentation needs at least "
     "one step, so dt must be at most time"),
    (lambda: _expand(neuron="if", reset_mv=-52.0),
     "grid 'g', cell settings: reset_mv = -52.0 is not below thresh_mv = -52.0; neuron = "
     "'if' needs reset_mv below thresh_mv (without leak, a reset at or above threshold "
     "fires on every step)"),
], ids=["float32-overflow", "float32-overflow-negative", "float32-underflow",
        "int-beyond-float", "int32-overflow", "steps-beyond-int32", "seed-beyond-uint32", "int64-overflow",
        "retries-beyond-stream-key", "beta-above-1", "beta-below-0", "dt-above-time",
        "if-reset-at-threshold"])
def test_refused_numbers_exact_messages(act, message):
    with pytest.raises(ConfigError) as err:
        act()
    assert str(err.value) == message


@pytest.mark.parametrize("settings", [
    {"nu_pre": 0.0}, {"nu_pre": 1.2e-38}, {"inh": 3.4e38}, {"thresh_mv": -3.4e38},
    {"seed": 2 ** 32 - 1}, {"surrogate_beta": 0.0}, {"surrogate_beta": 1.0},
    {"time": 10, "dt": 10.0}, {"max_retries": 2 ** 23 - 1},
    # Only if has no leak to take v back below threshold: lif's reset may sit above it.
    {"neuron": "lif", "reset_mv": -50.0},
], ids=["zero", "smallest-normal", "f32-max", "f32-min", "uint32-max", "beta-0", "beta-1",
        "one-step", "most-retries", "lif-reset-above-threshold"])
def test_edges_of_the_ranges_are_allowed(settings):
    _expand(**settings)


def test_cli_set_inh_beyond_float32_fails_with_one_line(tmp_path):
    out = tmp_path / "never"
    res = CliRunner().invoke(app, ["run", "smoke", "--set", "inh=1e300", "--out", str(out)])
    assert res.exit_code == 1
    assert res.output.splitlines() == [
        f"error: --set inh=1e300: 'inh' = 1e+300 must be at most {F32_MAX} (the engine "
        "holds it as float32)"]
    assert not out.exists()


def test_listing_shows_the_declared_ranges():
    assert SETTINGS["surrogate_beta"].brief() == "surrogate_beta = 0.9 (>= 0.0, <= 1.0)"
    assert SETTINGS["seed"].brief() == "seed = 0 (>= 0, uint32)"
    res = CliRunner().invoke(app, ["levels", "architecture"])
    assert res.exit_code == 0, res.output
    assert "surrogate_beta = 0.9 (>= 0.0, <= 1.0)" in res.output
    assert f"max_retries = 5 (>= 0, <= {2 ** 23 - 1})" in res.output
    lines = CliRunner().invoke(app, ["levels", "neuron"]).output.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == ["if"])
    assert lines[row + 2].strip() == ("needs: reset_mv < thresh_mv (without leak, a reset "
                                      "at or above threshold fires on every step)")


def test_dtype_must_hold_the_settings_type():
    with pytest.raises(ConfigError, match="dtype 'int32' cannot hold its float values"):
        Param("inh", 1.0, dtype="int32")


# Every published setting must still validate: a bound too tight fails here.

def _committed(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--", pattern], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines()]


RECORDS = _committed("results/*/cells/*.json")
SHIPPED_GRIDS = sorted(grids_dir().glob("*.toml"))


def test_published_files_are_found():
    assert len(RECORDS) > 400 and len(SHIPPED_GRIDS) >= 12


@pytest.mark.parametrize("path", SHIPPED_GRIDS, ids=lambda p: p.stem)
def test_shipped_grids_validate(path):
    grid = load_grid(path)
    assert expand(grid)
    if grid.search:
        parse_search(grid, path.name)


def test_committed_records_settings_validate():
    refused = []
    for path in RECORDS:
        settings = json.loads(path.read_text())["settings"]
        where = str(path.relative_to(ROOT))
        try:
            checked = {k: check_value(k, v, where) for k, v in settings.items()}
            check_cell(make_cell(checked), where)
        except ConfigError as exc:
            refused.append(str(exc))
    assert not refused, f"{len(refused)} committed records refused: {refused[:5]}"


def test_tuned_settings_validate():
    # The best trials' settings of tuned grids are published settings too.
    paths = _committed("results/*/best.json")
    assert paths
    for path in paths:
        grid = load_grid(path.parent / "grid.toml")
        for name, best in json.loads(path.read_text()).items():
            where = f"{path.relative_to(ROOT)} {name}"
            tuned = {k: check_value(k, v, where) for k, v in best["params"].items()}
            check_cell(make_cell({**grid.settings, **best["levels"], **tuned}), where)
