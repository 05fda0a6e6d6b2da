"""Datasets read from the data root: tiny files in each real format (tests/dataset_files.py),
the missing-file message of every dataset, the events encoder, DoG channels, and grids
across the ``dataset`` factor from the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import dataset_files
from stdp_bench.cli import app
from stdp_bench.config import ConfigError, make_cell
from stdp_bench.data import load_dataset
from stdp_bench.data_sources import check_present, source
from stdp_bench.grid import expand
from stdp_bench.grid_file import load_grid, parse_grid
from stdp_bench.levels import registry

# Every dataset read from the data root (all but scikit-learn's bundled digits).
ROOT_DATASETS = [n for n in registry.names("dataset") if source(n) is not None]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data")
    dataset_files.write_all(path)
    return path


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("name", ROOT_DATASETS)
def test_a_missing_dataset_stops_with_one_line_naming_folder_and_files(name, tmp_path,
                                                                      monkeypatch):
    monkeypatch.delenv("STDP_BENCH_DOWNLOAD", raising=False)
    src = source(name)
    with pytest.raises(ConfigError) as info:
        load_dataset(name, tmp_path)
    msg = str(info.value)
    assert msg == (
        f"dataset '{name}': no files in {tmp_path / src.folder}; expected there: "
        f"{', '.join(src.files)}. Put the files there, point --data-dir or STDP_BENCH_DATA "
        "at another root, or set STDP_BENCH_DOWNLOAD=1 to download")
    assert "\n" not in msg


def test_a_missing_file_is_named_alone(root, tmp_path):
    (tmp_path / "MNIST").symlink_to(root / "MNIST", target_is_directory=True)
    check_present("mnist", tmp_path)
    half = tmp_path / "FashionMNIST" / "raw"
    half.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (half / f).write_bytes((root / "FashionMNIST" / "raw" / f).read_bytes())
    with pytest.raises(ConfigError, match=r"'fashion_mnist': missing t10k-images-idx3-ubyte, "
                       r"t10k-labels-idx1-ubyte in .*FashionMNIST/raw; expected there: "
                       r"train-images"):
        check_present("fashion_mnist", tmp_path)


def test_the_cli_stops_before_any_work_when_files_are_missing(tmp_path):
    out = tmp_path / "out"
    res = run_cli(["run", "datasets", "--data-dir", str(tmp_path / "empty"),
                   "--out", str(out), "--quiet"])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1
    assert re.match(r"error: dataset '(mnist|fashion_mnist)': no files in ", res.output)
    assert not (out / "cells").exists()


@pytest.mark.parametrize("name", ROOT_DATASETS)
def test_every_dataset_reads_its_real_format(name, root):
    assert len(ROOT_DATASETS) == 8
    level = registry.get("dataset", name)
    ds = load_dataset(name, root, color="rgb" if name == "cifar10" else "gray")
    assert ds.input_shape == level.shape
    assert ds.n_classes == level.n_classes
    assert ds.x_train.shape[1] == ds.n_input == int(np.prod(level.shape))
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # Every class present, labels 0..n_classes-1 (EMNIST letters are 1..26 on disk).
    assert sorted(set(ds.y_train.tolist())) == list(range(level.n_classes))
    assert len(ds.x_test) == len(ds.y_test) > 0


@pytest.mark.parametrize("name", ["mnist", "emnist_letters", "cifar10"])
def test_images_come_out_upright(name, root):
    # The synthetic images are horizontal bars at a class-dependent row (EMNIST's are
    # stored transposed on disk, as the real ones are).
    ds = load_dataset(name, root)
    h, w = ds.image_shape
    img = ds.x_train[0].reshape(h, w)
    k = ds.n_classes
    row = int(ds.y_train[0]) * (h - 2) // (k - 1) + 1
    assert img[row, 2:w - 2].min() > 0.5  # grey CIFAR: the luma of (255, 127, 0)
    assert img[:, w // 2].mean() < 0.5  # a bar, not a column


def test_cifar_grey_is_the_luma_of_rgb(root):
    rgb = load_dataset("cifar10", root, color="rgb")
    grey = load_dataset("cifar10", root)
    r, g, b = rgb.x_train[:, :1024], rgb.x_train[:, 1024:2048], rgb.x_train[:, 2048:]
    np.testing.assert_allclose(grey.x_train, 0.299 * r + 0.587 * g + 0.114 * b, atol=1e-6)
    assert grey.input_shape == (1, 32, 32)


def test_nmnist_packed_events_match_tonic_frames(root):
    """The events encoder's dense input is tonic's ToFrame at dt, clipped to one spike."""
    from tonic.datasets import NMNIST as TonicNMNIST
    from tonic.io import read_mnist_file
    from tonic.transforms import ToFrame

    from stdp_bench.engine.kernel_build import encode_dense

    ds = load_dataset("nmnist", root, events=True)
    files = sorted((root / "NMNIST" / "Train").glob("*/*.bin"))
    T, dt = 40, 2.0
    for k in (0, 7, 33):
        dense, ins = encode_dense(ds.x_train, np.array([k]), np.array(["events"]),
                                  np.array([k]), np.array([0.0]), np.array([0], np.uint64),
                                  np.array([dt], np.float32), T, 0, ds.n_input)
        ev = read_mnist_file(str(files[k]), dtype=TonicNMNIST.dtype)
        frames = ToFrame(TonicNMNIST.sensor_size, time_window=dt * 1000, start_time=0,
                         end_time=T * dt * 1000, include_incomplete=True)(ev)[:T]
        want = frames.reshape(len(frames), -1) > 0
        assert dense[:, 0].shape == want.shape
        assert np.array_equal(dense[:, 0], want)
        assert ins[0] == want.sum() > 0
        assert int(ds.y_train[k]) == int(files[k].parent.name)


def test_nmnist_frames_for_baselines(root):
    ds = load_dataset("nmnist", root)
    assert not ds.events and ds.x_train.shape[1] == 2 * 34 * 34
    assert np.allclose(ds.x_train.max(1), 1.0)


def test_dog_doubles_the_channels_of_every_image_dataset(root):
    ds = load_dataset("cifar10", root, color="rgb", preprocess="dog")
    assert ds.input_shape == (6, 32, 32) and ds.x_train.shape[1] == 6 * 32 * 32
    assert np.allclose(ds.x_train.max(1), 1.0)
    grey = load_dataset("mnist", root, preprocess="dog")
    on, off = grey.x_train[:, :784], grey.x_train[:, 784:]
    # ON and OFF are the two signs of one filter response: never both at one pixel.
    assert not np.any((on > 0) & (off > 0))


@pytest.mark.parametrize("settings, message", [
    ({"dataset": "mnist", "encoder": "events"},
     "encoder = 'events' feeds recorded events; dataset = 'mnist' holds images "
     "(event datasets: nmnist)"),
    ({"dataset": "nmnist", "encoder": "poisson"},
     "dataset = 'nmnist' holds event recordings, which encoder = 'poisson' cannot "
     "encode; allowed: events"),
    ({"dataset": "nmnist", "encoder": "events", "preprocess": "dog"},
     "preprocess = 'dog' filters images; dataset = 'nmnist' holds event recordings "
     "(use 'none')"),
    ({"family": "ann", "architecture": "mlp", "dataset": "nmnist", "encoder": "events"},
     "encoder = 'events' is for the spiking STDP networks; family = 'ann' reads an event "
     "dataset as frames with encoder = 'direct'"),
    ({"dataset": "mnist", "color": "rgb"},
     "color = 'rgb' needs a colour dataset (cifar10); dataset = 'mnist' is grey"),
])
def test_refused_combinations_name_the_settings(settings, message):
    with pytest.raises(ConfigError) as info:
        expand(parse_grid({"name": "g", "settings": settings}))
    assert str(info.value) == f"grid 'g', cell settings: {message}"


def test_events_time_defaults_to_the_recording_length():
    assert make_cell({"dataset": "nmnist", "encoder": "events"}).time == 300
    assert make_cell({"dataset": "nmnist", "encoder": "events", "time": 120}).time == 120
    assert make_cell({"dataset": "mnist"}).time == 250
    cells = expand(load_grid(Path(__file__).parents[1] / "grids" / "datasets.toml"))
    assert {(c.config.dataset, c.config.encoder, c.config.time) for c in cells} == {
        ("mnist", "poisson", 250), ("fashion_mnist", "poisson", 250),
        ("cifar10", "poisson", 250), ("nmnist", "events", 300)}


def test_datasets_command_lists_shapes_classes_and_files(root, tmp_path):
    res = run_cli(["datasets", "--data-dir", str(root)])
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.output.splitlines()[2:] if line.strip()}
    assert re.search(r"emnist_letters\s+1x28x28\s+26\s+present in EMNIST/raw/",
                     lines["emnist_letters"])
    assert re.search(r"nmnist\s+2x34x34\s+10\s+present in NMNIST/", lines["nmnist"])
    res = run_cli(["datasets", "--data-dir", str(tmp_path)])
    assert "cifar10         3x32x32        10  missing in cifar-10-batches-py/: data_batch_1" \
        in res.output
    assert "digits          1x8x8          10  bundled (scikit-learn)" in res.output


def test_a_grid_across_datasets_runs_from_the_cli(root, tmp_path):
    out = tmp_path / "out"
    res = run_cli(["run", "datasets", "--data-dir", str(root), "--out", str(out), "--quiet",
                   "--set", "n_neurons=20", "--set", "n_train=30", "--set", "n_label=20",
                   "--set", "n_test=20", "--set", 'dataset=["fashion_mnist","cifar10","nmnist"]'])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "results.csv")
    assert set(df.status) == {"ok"}
    rows = df[df.readout == "linear"].set_index("dataset")
    assert rows.loc["nmnist", "input_shape"] == "2x34x34"
    assert rows.loc["nmnist", "time"] == 300
    assert rows.loc["cifar10", "input_shape"] == "1x32x32"
    assert set(rows.n_classes) == {10}
    assert rows.loc["nmnist", "accuracy"] > 0.3  # bars at 10 heights: learnable


def test_class_count_drives_readouts_and_confusion(root, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('name = "letters"\n[settings]\ndataset = "emnist_letters"\n'
                    'n_neurons = 30\ntime = 50\nn_train = 40\nn_label = 30\nn_test = 36\n'
                    '[factors]\narchitecture = ["dc2015", "conv"]\n'
                    'preprocess = ["none", "dog"]\n'
                    '[[exclude]]\narchitecture = "conv"\npreprocess = "none"\n')
    out = tmp_path / "out"
    res = run_cli(["run", str(grid), "--data-dir", str(root), "--out", str(out), "--quiet",
                   "--set", "kernel_size=12", "--set", "stride=8", "--set", "n_filters=4"])
    assert res.exit_code == 0, res.output
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(records) == 3 and {r["status"] for r in records} == {"ok"}
    for rec in records:
        assert rec["n_classes"] == 26
        channels = 2 if rec["settings"]["preprocess"] == "dog" else 1
        assert rec["input_shape"] == [channels, 28, 28]
        for readout in rec["readouts"].values():
            assert np.array(readout["confusion"]).shape == (26, 26)


def test_tune_reads_each_cells_own_dataset(tmp_path):
    """Trials of cells with other inputs (here DoG's two channels) never share a task:
    a DoG cell's trials score the same beside pixel cells as alone."""
    from stdp_bench.tuner import tune_grid

    def tune(levels: list[str], out: Path) -> pd.DataFrame:
        grid = parse_grid({
            "name": "dog_tuned",
            "settings": {"dataset": "digits", "n_neurons": 8, "time": 30,
                         "intensity_hz": 256.0, "norm": 10.0, "n_train": 40, "n_label": 60,
                         "n_test": 60},
            "factors": {"preprocess": levels},
            "search": {"trials": 2, "batch": 2, "rungs": [20, 40], "n_label": 60,
                       "n_val": 60, "seed": 1,
                       "space": {"inh": {"low": 20.0, "high": 200.0}}}})
        tune_grid(grid, out, progress=False)
        return pd.read_parquet(out / "trials.parquet")

    mixed = tune(["none", "dog"], tmp_path / "mixed")
    alone = tune(["dog"], tmp_path / "alone")
    dog = mixed[mixed.preprocess == "dog"].sort_values("trial")
    assert dog.value.notna().all()
    assert dog.value.tolist() == alone.sort_values("trial").value.tolist()
    records = [json.loads(p.read_text()) for p in (tmp_path / "mixed" / "cells").glob("*.json")]
    assert {r["status"] for r in records} == {"ok"}
    assert sorted(r["input_shape"][0] for r in records) == [1, 1, 2, 2]


def test_download_switch_lets_the_reader_fetch(tmp_path, monkeypatch):
    """With STDP_BENCH_DOWNLOAD=1 a missing file is the reader's to fetch (no network
    here, so the reader's failure comes back as one ConfigError naming the folder)."""
    monkeypatch.setenv("STDP_BENCH_DOWNLOAD", "1")
    check_present("fashion_mnist", tmp_path)  # no longer refused up front
    fetched = []
    src = source("fashion_mnist")

    def offline(root: str, download: bool):
        fetched.append(download)
        raise RuntimeError("no network")

    from dataclasses import replace

    from stdp_bench.levels.datasets import mnist_family

    monkeypatch.setitem(mnist_family.SOURCES, "fashion_mnist", replace(src, read=offline))
    with pytest.raises(ConfigError, match=r"dataset 'fashion_mnist': cannot read .*"
                       r"FashionMNIST/raw \(RuntimeError: no network\)"):
        load_dataset("fashion_mnist", tmp_path / "again")
    assert fetched == [True]


@pytest.mark.parametrize("family, architecture", [("ann", "cnn"), ("surrogate", "cnn"),
                                                  ("ann", "mlp")])
def test_baselines_take_dog_channels(family, architecture):
    from stdp_bench.config import CellConfig
    from test_baselines import train_baseline

    ds = load_dataset("digits", preprocess="dog")
    cfg = CellConfig(family=family, architecture=architecture, encoder="direct",
                     dataset="digits", preprocess="dog", n_neurons=16, n_filters=4,
                     kernel_size=3, time=5, epochs=1)
    result = train_baseline(cfg, ds.x_train[:64], ds.y_train[:64], ds.x_test[:32],
                            ds.input_shape, ds.n_classes, max_steps=2)
    assert result.predictions.shape == (32,)


def test_a_run_reads_each_dataset_once(root, tmp_path, monkeypatch):
    """The preflight's reads serve the jobs: four datasets, four reads."""
    from stdp_bench import data, data_sources

    data._read.cache_clear()
    data._prepared.cache_clear()
    reads = []
    real = data_sources.read
    monkeypatch.setattr(data_sources, "read",
                        lambda name, path: reads.append(name) or real(name, path))
    res = run_cli(["run", "datasets", "--data-dir", str(root), "--out", str(tmp_path / "o"),
                   "--quiet", "--set", "n_neurons=10", "--set", "n_train=20",
                   "--set", "n_label=10", "--set", "n_test=10", "--set", "time=40"])
    assert res.exit_code == 0, res.output
    assert sorted(reads) == ["cifar10", "fashion_mnist", "mnist", "nmnist"]


@pytest.mark.parametrize("name", ROOT_DATASETS)
def test_sizes_from_headers_equal_the_sizes_read(name, root):
    """IDX headers and N-MNIST's file counts give what the readers read; CIFAR-10 counts
    the official batches' 10,000 images each (the fixtures' batches hold 12)."""
    from stdp_bench.data import split_sizes

    ds = load_dataset(name, root)
    if name == "cifar10":
        assert split_sizes(name, root) == (50_000, 10_000)
    else:
        assert split_sizes(name, root) == (len(ds.y_train), len(ds.y_test))


def test_preflight_reads_headers_not_datasets(root, monkeypatch):
    """The preflight never calls a reader, and refuses a split too small for a cell with
    the message the subsets of the loaded dataset give."""
    from stdp_bench import data, data_sources
    from stdp_bench.data import cell_dataset, cell_subsets
    from stdp_bench.grid import Cell
    from stdp_bench.orchestration import preflight

    big = make_cell({"dataset": "mnist", "n_train": 50, "n_label": 20, "n_test": 10})
    with pytest.raises(ConfigError) as loaded:
        cell_subsets(cell_dataset(big, root), big)
    data._read.cache_clear()
    data._prepared.cache_clear()

    def poisoned(name, path):
        raise AssertionError(f"the preflight read {name}")

    monkeypatch.setattr(data_sources, "read", poisoned)
    fits = [Cell(make_cell({"dataset": n, "n_train": 20, "n_label": 10, "n_test": 10}), ())
            for n in ROOT_DATASETS]
    preflight(fits, root)
    with pytest.raises(ConfigError) as checked:
        preflight([Cell(big, ())], root)
    assert str(checked.value) == str(loaded.value) == (
        "dataset 'mnist' has 60 training samples but n_train + n_label = 70 "
        '(label_source = "train" would label on training samples instead)')


def test_a_broken_idx_header_is_one_line_naming_the_file(root, tmp_path):
    from stdp_bench.data import split_sizes

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in source("mnist").files:
        (raw / f).write_bytes((root / "MNIST" / "raw" / f).read_bytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(ConfigError) as info:
        split_sizes("mnist", tmp_path)
    assert str(info.value) == (f"dataset 'mnist': cannot read {raw} (ValueError: "
                               "t10k-labels-idx1-ubyte has no IDX header with magic 0x801)")


def _front_end_recipe(x: np.ndarray, kernels: list, keep_equal: bool) -> np.ndarray:
    """SpykeTorch's front-end recipe computed another way (scipy's correlate and box
    mean, zeros outside the image): each kernel on 0..255, responses under 50 (and at
    50, unless ``keep_equal``) dropped, divided by the 17 x 17 local mean, scaled to a
    maximum of 1 per image."""
    from scipy.ndimage import correlate, uniform_filter

    want = np.zeros((len(x), len(kernels), *x.shape[2:]))
    for i in range(len(x)):
        for ch, kernel in enumerate(kernels):
            d = correlate(x[i, 0].astype(np.float64) * 255, kernel, mode="constant")
            d[(d < 50) if keep_equal else (d <= 50)] = 0
            want[i, ch] = d / (uniform_filter(d, 17, mode="constant") + 1e-12)
        want[i] /= want[i].max()
    return want


def test_kheradpisheh_front_end_is_its_recipe_written_out():
    """``dog_k2018`` against the recipe computed another way (scipy's correlate and box
    mean, zeros outside the image): DoG ON (sigmas 1, 2) and OFF (2, 1) on 0..255,
    responses at or below 50 dropped, divided by the 17 x 17 local mean, scaled to a
    maximum of 1 per image."""
    from stdp_bench.preprocess import dog_k2018, spyketorch_dog_kernel

    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(3, 1, 12, 12)) ** 3).astype(np.float32)
    want = _front_end_recipe(
        x, [spyketorch_dog_kernel(*sig) for sig in [(1.0, 2.0), (2.0, 1.0)]], False)
    got = dog_k2018(x)
    assert got.shape == (3, 2, 12, 12)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5)
    ds = load_dataset("digits", preprocess="dog_k2018")
    assert ds.input_shape == (2, 8, 8) and ds.x_train.shape[1] == 128


def test_mozafari_front_end_is_its_recipe_written_out():
    """``dog_m2019`` against the recipe computed another way (scipy's correlate and box
    mean, zeros outside the image): the six SpykeTorch DoG kernels (3, 7 and 13 pixels,
    ON then OFF) on 0..255, responses under 50 dropped (50 itself kept), divided by the
    17 x 17 local mean, scaled to a maximum of 1 per image."""
    from stdp_bench.preprocess import M2019_KERNELS, dog_m2019, spyketorch_dog_kernel

    rng = np.random.default_rng(1)
    x = (rng.uniform(size=(3, 1, 16, 16)) ** 3).astype(np.float32)
    want = _front_end_recipe(
        x, [spyketorch_dog_kernel(s1, s2, w) for w, s1, s2 in M2019_KERNELS], True)
    got = dog_m2019(x)
    assert got.shape == (3, 6, 16, 16)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5)
    ds = load_dataset("digits", preprocess="dog_m2019")
    assert ds.input_shape == (6, 8, 8) and ds.x_train.shape[1] == 384
