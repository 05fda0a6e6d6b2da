"""Plugin levels: a package installed from tests/plugin_pkg registers levels through the
entry-point group ``stdp_bench.levels``; a grid imports another module with
``plugins = [...]``. They show in ``stdp-bench levels`` and in validation messages, and
run: a level with kernel steps on the kernel engine, a torch-only one on the torch engine.

The package is installed with pip into a temporary folder that only the subprocesses
of these tests see (``PYTHONPATH``), so the test environment is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import private_ray_head

PLUGIN_SRC = Path(__file__).parent / "plugin_pkg"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: setuptools leaves build/ and egg-info next to the sources.
    src = shutil.copytree(PLUGIN_SRC, tmp_path_factory.mktemp("src") / "plugin_pkg")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(src)],
                   check=True, capture_output=True, text=True)
    assert any(p.name.startswith("stdp_bench_demo_levels") for p in target.glob("*.dist-info"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stdp_bench", *args], env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_levels_lists_plugin_levels_with_their_settings(plugin_env):
    out = cli(plugin_env, "levels", "rule")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == ["anti_hebbian"])
    assert "[kernel, torch]" in lines[row] and "coincident activity depresses" in lines[row]
    assert "plugin: demo_levels.anti_hebbian" in lines[row + 1]
    assert "+ anti_scale = 1.0 (>= 0.0): scale of the depression" in lines[row + 2]
    out = cli(plugin_env, "levels", "neuron")
    assert any(line.split()[:2] == ["torch_lif", "[torch]"] for line in out.stdout.splitlines())


@pytest.mark.slow
def test_validation_messages_name_plugin_levels(plugin_env, tmp_path):
    grid = tmp_path / "bad.toml"
    grid.write_text('name = "bad"\n[settings]\nrule = "antihebbian"\n')
    out = cli(plugin_env, "run", str(grid), "--out", str(tmp_path / "r"))
    assert out.returncode == 1
    assert ("'rule' = 'antihebbian' is not allowed; allowed: stdp, weight_dependent, "
            "hebbian, teacher, none") in out.stderr
    assert "anti_hebbian" in out.stderr.split("allowed:")[1]


@pytest.mark.slow
def test_a_grid_runs_plugin_levels_on_the_engines_that_have_their_steps(plugin_env, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text("""
name = "plugins"
plugins = ["demo_levels.regular_encoder"]
[settings]
dataset = "digits"
n_neurons = 10
time = 30
n_train = 30
n_label = 20
n_test = 20
[factors]
encoder = ["poisson", "regular"]
neuron = ["lif", "torch_lif"]
rule = ["stdp", "anti_hebbian"]
""")
    out = cli(plugin_env, "run", str(grid), "--out", str(tmp_path / "r"), "--quiet")
    assert out.returncode == 0, out.stderr
    table = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert len(table) == 8 * 4 and (table["status"] == "ok").all(), table["error"].unique()
    assert set(table["anti_scale"].dropna()) == {1.0}
    engines = {}
    for path in (tmp_path / "r" / "cells").glob("*.json"):
        rec = json.loads(path.read_text())
        engines[rec["settings"]["neuron"]] = engines.get(rec["settings"]["neuron"], set())
        engines[rec["settings"]["neuron"]].add(rec["provenance"]["engine"])
    assert engines == {"lif": {"kernel"}, "torch_lif": {"torch"}}
    # Pinning the kernel engine on a torch-only level is an error row, not a crash.
    out = cli(plugin_env, "run", str(grid), "--out", str(tmp_path / "pinned"), "--quiet",
              "--engine", "kernel", "--set", "neuron=torch_lif", "--set", "encoder=poisson")
    assert out.returncode == 0, out.stderr
    table = pd.read_parquet(tmp_path / "pinned" / "results.parquet")
    assert (table["status"] == "error").all()
    assert ("neuron 'torch_lif': no steps for the kernel engine; run it with --engine torch"
            in table["error"].iloc[0])


@pytest.mark.slow
def test_plugin_readout_and_architecture_run_in_a_grid(plugin_env, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text("""
name = "plugin_arch"
plugins = ["demo_levels.winner_readout", "demo_levels.random_projection"]
[settings]
dataset = "digits"
n_neurons = 20
time = 30
n_train = 30
n_label = 100
n_test = 60
[factors]
architecture = ["dc2015", "random_projection"]
""")
    out = cli(plugin_env, "run", str(grid), "--out", str(tmp_path / "r"), "--quiet")
    assert out.returncode == 0, out.stderr
    table = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert (table["status"] == "ok").all(), table["error"].unique()
    winner = table[table["readout"] == "winner_neuron"].set_index("architecture")
    assert sorted(winner.index) == ["dc2015", "random_projection"]
    assert winner["accuracy"].between(0.0, 1.0).all(), winner["accuracy"]  # scored
    proj = table[table["architecture"] == "random_projection"].set_index("readout")
    # No events from this engine: the n-gram readout has a row but no score.
    assert proj.loc["linear", "accuracy"] > 0.5 and pd.isna(proj.loc["ngram", "accuracy"])
    engines = {json.loads(p.read_text())["provenance"]["engine"]
               for p in (tmp_path / "r" / "cells").glob("*.json")}
    assert engines == {"kernel", "projection"}


@pytest.mark.slow
def test_a_grid_with_plugins_runs_on_a_ray_cluster_it_joins(plugin_env, tmp_path):
    """The grid's plugin modules travel in every job's context: a Ray worker, which is
    no child of the driver and sees none of its variables, imports them before the job."""
    grid = tmp_path / "g.toml"
    grid.write_text("""
name = "plugins_on_ray"
plugins = ["demo_levels.regular_encoder"]
[settings]
dataset = "digits"
n_neurons = 10
time = 30
n_train = 30
n_label = 20
n_test = 20
[factors]
encoder = ["poisson", "regular"]
rule = ["stdp", "anti_hebbian"]
""")
    # The head and its workers see the plugin package (PYTHONPATH), as a cluster's
    # nodes would have it installed; the plugins = [...] module is not an entry point.
    with private_ray_head(plugin_env) as (address, env, _):
        out = cli(env, "run", str(grid), "--out", str(tmp_path / "r"), "--quiet",
                  "--replicas", "1", "--backend", "ray", "--address", address)
    assert out.returncode == 0, out.stderr
    table = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert (table["status"] == "ok").all(), table["error"].unique()
    assert set(table["encoder"]) == {"poisson", "regular"}
    assert set(table["rule"]) == {"stdp", "anti_hebbian"} and table["cell_id"].nunique() == 4
