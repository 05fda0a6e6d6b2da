"""Model files: one trained cell, self-described, in one ``.npz`` (``artifacts/KEY/model.npz``).

A model file holds the engine's state (weights, thresholds, whatever ``load_state``
needs), what every readout learned (label assignments and proportions, n-gram scores,
the linear probe's scaler and coefficients), and a JSON header: the cell's full
settings, input shape, class count, the engine and input gain that ran it, and the
package versions and commit. ``.npz`` because it is numpy's own container (no new
dependency), loads without pickle (``allow_pickle=False``: a model file cannot run
code), and holds arrays of any dtype (int64 label assignments, float64 probe
coefficients) where safetensors holds tensors only.

>>> import tempfile, numpy as np
>>> path = Path(tempfile.mkdtemp()) / "model.npz"
>>> save_model(path, {"cell_id": "abc"}, {"state/W": np.ones((1, 2, 3), np.float32)})
>>> header, arrays = read_model(path)
>>> header["cell_id"], header["format"], arrays["state/W"].shape
('abc', 'stdp_bench.model/1', (1, 2, 3))
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from stdp_bench.atomic_files import replace_atomically

FORMAT = "stdp_bench.model/1"
_HEADER = "header"


class ModelFileError(ValueError):
    """A model file that cannot be read by this version; the message names the file."""


def save_model(path: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and the JSON ``header`` (``format`` added) to ``path`` atomically."""
    blob = json.dumps({"format": FORMAT, **header}, sort_keys=True).encode()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{_HEADER: np.frombuffer(blob, np.uint8)}, **arrays)

    replace_atomically(Path(path), write)


def read_model(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a model file; one-line :class:`ModelFileError` for a file
    that is missing, corrupted, or of another format version."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        header = json.loads(arrays.pop(_HEADER).tobytes().decode())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError,
            json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable stdp_bench model file ({exc})") from None
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: model format {header.get('format')!r} is not the "
                             f"{FORMAT!r} this version reads (written by stdp_bench "
                             f"{header.get('versions', {}).get('stdp_bench', '?')})")
    return header, arrays


def split_arrays(arrays: dict[str, np.ndarray]
                 ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """``state/KEY`` and ``readout/NAME/KEY`` entries as the engine state and each
    readout's parameters.

    >>> split_arrays({"state/W": 1, "readout/linear/coef": 2})
    ({'W': 1}, {'linear': {'coef': 2}})
    """
    state: dict[str, np.ndarray] = {}
    fitted: dict[str, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        kind, _, rest = name.partition("/")
        if kind == "state":
            state[rest] = value
        elif kind == "readout":
            readout, _, key = rest.partition("/")
            fitted.setdefault(readout, {})[key] = value
    return state, fitted


def join_arrays(state: dict[str, np.ndarray], fitted: dict[str, dict[str, np.ndarray]]
                ) -> dict[str, np.ndarray]:
    """The inverse of :func:`split_arrays`."""
    out = {f"state/{k}": v for k, v in state.items()}
    for readout, params in fitted.items():
        out.update({f"readout/{readout}/{k}": v for k, v in params.items()})
    return out
