"""The throughput benchmark, tiny and offline (digits)."""

import json
import math

import pytest

from typer.testing import CliRunner

from stdp_bench.bench import RESULT_KEYS, bench_cells, run_bench
from stdp_bench.cli import app
from stdp_bench.map_bench import format_map_table, run_map_bench

REQUIRED = ("device", "stock_train_sps", "train_sps_r1", "train_sps_rN", "train_ratio_r1",
            "train_ratio_rN", "stock_eval_sps", "eval_sps", "eval_ratio", "peak_rss_mb")


def _check(result: dict) -> None:
    for key in REQUIRED:
        assert key in result, key
    assert set(result) == set(RESULT_KEYS)
    assert isinstance(result["device"], str) and result["device"].startswith("cpu")
    assert result["engine"] == "kernel"
    for key, value in result.items():
        if key not in ("device", "engine"):
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, key


@pytest.mark.slow
def test_run_bench_digits():
    result = run_bench(dataset="digits", device="cpu", replicas=3, samples=20, samples_r1=20,
                       eval_samples=20, stock_samples=3)
    _check(result)
    assert result["replicas"] == 3 and result["samples"] == 20
    assert result["time_steps"] == 250


def test_bench_cells_are_the_factorial_grid():
    cells = bench_cells(45)
    assert len({c.cell_id() for c in cells}) == 45
    assert {c.encoder for c in cells} == {"poisson", "bernoulli", "rank_order"}
    more = bench_cells(47, "digits")
    assert len({c.cell_id() for c in more}) == 47 and more[0].dataset == "digits"


def test_cli_bench_last_line_is_json():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--device", "cpu", "--replicas", "2",
                                   "--samples", "10", "--samples-r1", "10",
                                   "--eval-samples", "10", "--stock-samples", "2"])
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    _check(json.loads(last))
    assert "net-samples/s" in res.output


def test_cli_bench_rejects_bad_device():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--device", "tpu"])
    assert res.exit_code == 1


def test_cli_bench_neurons_keys_per_size_and_figure(tmp_path):
    fig = tmp_path / "scaling.png"
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--device", "cpu",
                                   "--neurons", "10,20", "--stock-max-neurons", "10",
                                   "--samples-r1", "10", "--eval-samples", "10",
                                   "--stock-samples", "3", "--figure", str(fig)])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    assert result["neurons"] == [10, 20] and result["engine"] == "kernel"
    for n in (10, 20):
        for key in ("train_sps", "eval_sps"):
            assert math.isfinite(result[f"{key}_n{n}"]) and result[f"{key}_n{n}"] > 0
    # Stock is timed only up to --stock-max-neurons; the ratio exists only where it ran.
    assert result["stock_train_sps_n10"] > 0 and result["train_ratio_n10"] > 0
    assert "stock_train_sps_n20" not in result and "train_ratio_n20" not in result
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line.split() for line in res.output.splitlines() if line.strip().startswith("20 ")]
    assert rows and rows[0][1] == "-"


def test_cli_bench_neurons_bad_size_names_it():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--neurons", "100,4x0"])
    assert res.exit_code == 1
    assert "--neurons: '4x0' is not a whole number" in res.output


def test_cli_bench_figure_needs_neurons(tmp_path):
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--figure",
                                   str(tmp_path / "f.png")])
    assert res.exit_code == 1
    assert "--figure needs --neurons" in res.output


MAP_KEYS = {"stock_train_sps", "stock_eval_sps", "train_sps_r1", "eval_sps_r1",
            "train_sps_rN", "eval_sps_rN", "train_ratio_r1", "eval_ratio_r1",
            "train_ratio_rN", "eval_ratio_rN", "replicas", "neurons"}


@pytest.mark.parametrize("arch", ["conv", "local"])
def test_map_bench_times_bindsnet_and_the_map_kernel(arch):
    out = run_map_bench(arch, dataset="digits", samples=10, eval_samples=20,
                        stock_samples=2, stock_eval_samples=10)
    assert MAP_KEYS <= set(out) and out["architecture"] == arch
    assert out["neurons"] == 32 * 6 * 6  # 3x3 fields at stride 1 on 8x8 digits
    assert out["train_ratio_r1"] == pytest.approx(out["train_sps_r1"] / out["stock_train_sps"])
    assert out["stock_eval_samples"] == 10
    assert format_map_table(out).startswith(f"{arch}: 1152 neurons, 100 steps per sample")


def test_cli_bench_architecture_names_the_allowed_ones():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--architecture", "mlp"])
    assert res.exit_code == 1
    assert ("--architecture 'mlp' is not allowed here; allowed: dc2015, conv, local, "
            "kheradpisheh") in res.output


def test_cli_bench_stock_eval_samples_reach_the_map_bench_only():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--stock-eval-samples", "5"])
    assert res.exit_code == 1
    assert "--stock-eval-samples needs --architecture conv or local" in res.output
    res = CliRunner().invoke(app, [
        "bench", "--dataset", "digits", "--architecture", "local", "--samples", "4",
        "--eval-samples", "4", "--stock-samples", "1", "--stock-eval-samples", "3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.splitlines()[-1])["stock_eval_samples"] == 3


@pytest.mark.slow
def test_cli_bench_kheradpisheh_times_both_layers_and_the_twin():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--architecture",
                                   "kheradpisheh", "--samples", "20", "--eval-samples", "20",
                                   "--stock-samples", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.splitlines()[-1])
    for key in ("train_sps_layer1", "train_sps_layer2", "eval_sps"):
        assert out[key] > 0 and out[f"ratio_{key}"] == pytest.approx(
            out[key] / out[f"torch_{key}"])
    assert out["recipe_epochs"] == [2, 20] and out["features"] == 10  # 8x8 -> 8x8 -> 4x4 -> 3x3 -> 1x1
    assert out["kept_sps_layer2"] > 0 and out["train_sps_layer2_kept"] > 0
    assert "train, layer 2" in res.output and "train, layer 2, kept input" in res.output
