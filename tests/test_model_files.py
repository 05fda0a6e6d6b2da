"""Model files: every finished cell saves one; reloaded, it scores its test samples
exactly as its record says, on every engine; broken files give one line."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stdp_bench.cli import app
from stdp_bench.grid_file import parse_grid
from stdp_bench.model import load_model
from stdp_bench.model_file import ModelFileError, read_model, save_model
from stdp_bench.runner import run_grid

SMALL = {"dataset": "digits", "time": 30, "n_train": 40, "n_label": 80, "n_test": 60}
GRIDS = {
    "stdp": {"name": "models", "settings": {**SMALL, "n_neurons": 8, "kernel_size": 4,
                                            "stride": 2, "n_filters": 3, "neuron": "lif"},
             "factors": {"architecture": ["dc2015", "conv", "local"]}},
    "baselines": {"name": "models_base", "settings": {**SMALL, "n_neurons": 16, "epochs": 1,
                                                      "encoder": "poisson", "n_filters": 4,
                                                      "batch_size": 32},
                  "factors": {"family": ["ann", "surrogate"], "architecture": ["mlp", "cnn"]}},
    # A two-layer stack (its readouts: svm on raw features, proportion weighting, n-gram).
    "stack": {"name": "models_stack",
              "settings": {**SMALL, "time": 6, "n_train": 20, "epochs": 2,
                           "architecture": "stack", "encoder": "latency", "neuron": "if",
                           "svm_c": 1.0, "svm_standardize": False,
                           "layers": "conv(maps=4,kernel=3,pad=1,threshold=1.5,winners=2);"
                                     "pool(kernel=2);conv(maps=6,kernel=2,threshold=0.8,"
                                     "winners=2,inhibit_input=true);pool(kernel=2)"},
              "factors": {"rule": ["multiplicative", "none"]}},
    # A stack ending in a decision layer trained by R-STDP (Mozafari's kind): its own
    # decision, proportion weighting and n-grams.
    "decision": {"name": "models_decision",
                 "settings": {**SMALL, "time": 5, "n_train": 30, "epochs": 3,
                              "architecture": "stack", "encoder": "latency", "neuron": "if",
                              "adapt_batch": 10,
                              "layers": "conv(maps=4,kernel=3,pad=1,threshold=1.0,winners=2);"
                                        "conv(maps=20,kernel=8,fire_at_end=true,decide=true,"
                                        "rule=rstdp,epochs=2,wmin=0.2,wmax=0.8)"},
                 "factors": {"seed": [0, 1]}},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, grid in GRIDS.items():
        out[name] = tmp_path_factory.mktemp(name) / "r"
        table = run_grid(parse_grid(grid), out[name], progress=False)
        assert (table["status"] == "ok").all(), table["error"].unique()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GRIDS))
def test_predict_gives_every_records_accuracy_back(folders, name):
    res = CliRunner().invoke(app, ["predict", str(folders[name])])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    # conv/local add filter_proportion; stacks read svm, proportion_weighting and ngram
    # (a decision stack: decision in place of svm).
    n = {"stdp": 4 + 4 + 4 + 2 * 1, "baselines": 4, "stack": 2 * 3, "decision": 2 * 3}[name]
    assert lines[-1] == f"{n} of {n} accuracies equal the records'", res.output


@pytest.mark.slow
def test_a_reloaded_torch_engine_answers_as_the_trained_one(tmp_path):
    grid = parse_grid({"name": "torch_models", "settings": {**SMALL, "n_neurons": 8}})
    from stdp_bench.execution import Execution

    run_grid(grid, tmp_path / "r", progress=False, execution=Execution("cpu", "torch", True))
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "r"), "--readout", "linear"])
    assert res.exit_code == 0 and res.output.strip().endswith("1 of 1 accuracies equal the "
                                                              "records'"), res.output


def test_model_files_refuse_what_they_cannot_read(tmp_path):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match=r"model.npz: not a readable stdp_bench model "
                                             r"file \("):
        read_model(bad)
    other = tmp_path / "other.npz"
    save_model(other, {"versions": {"stdp_bench": "9.9"}}, {"state/W": np.ones(2)})
    data = dict(np.load(other))
    data["header"] = np.frombuffer(b'{"format": "stdp_bench.model/0", "versions": '
                                   b'{"stdp_bench": "0.0.1"}}', np.uint8)
    np.savez(other, **data)
    with pytest.raises(ModelFileError, match=r"other.npz: model format "
                                             r"'stdp_bench.model/0' is not the "
                                             r"'stdp_bench.model/1' this version reads "
                                             r"\(written by stdp_bench 0.0.1\)$"):
        load_model(other)
    res = CliRunner().invoke(app, ["predict", str(tmp_path)])
    assert res.exit_code == 1
    assert f"error: {tmp_path}: no model file for any cell" in res.output


def test_predict_fits_the_readouts_again_on_another_labelling_set(tmp_path):
    run_grid(parse_grid({"name": "relabel", "settings": {**SMALL, "n_neurons": 8}}),
             tmp_path, progress=False)
    runner = CliRunner()
    # The cell's own labelling samples give back the readouts its run fitted.
    own = runner.invoke(app, ["predict", str(tmp_path), "--n-label", "80"])
    assert own.exit_code == 0, own.output
    assert own.output.strip().endswith("4 of 4 accuracies equal the records'"), own.output
    more = runner.invoke(app, ["predict", str(tmp_path), "--n-label", "400",
                               "--readout", "proportion_weighting"])
    assert more.exit_code == 0, more.output
    header, row = more.output.strip().splitlines()
    assert header.split() == ["cell", "readout", "labelled", "samples", "accuracy",
                              "recorded", "equal"]
    assert row.split()[1:4] == ["proportion_weighting", "400", "60"]
    assert row.split()[-1] == "None"
    bad = runner.invoke(app, ["predict", str(tmp_path), "--n-label", "0"])
    assert bad.exit_code == 1
    assert "error: --n-label: 'n_label' = 0 must be at least 1" in bad.output
    big = runner.invoke(app, ["predict", str(tmp_path), "--n-label", "2000"])
    assert big.exit_code == 1
    assert ("error: dataset 'digits' has 1300 training samples but n_train + n_label = 2040 "
            '(label_source = "train" would label on training samples instead)') in big.output
