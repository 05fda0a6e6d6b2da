"""Tiny dataset files in the real formats, written where torchvision and tonic look.

Tests (and the README's offline demo of ``stdp-bench datasets``) fill a temporary data
root with these: IDX files for the MNIST family, CIFAR-10's pickled batches, N-MNIST's
5-byte event records. The images are class-dependent bars so a network can learn them.

Run as a script to fill a folder: ``python tests/dataset_files.py ROOT``.
"""

from __future__ import annotations

import pickle
import struct
import sys
from pathlib import Path

import numpy as np

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
EMNIST_CLASSES = {"digits": 10, "letters": 26, "balanced": 47}
# EMNIST letters are labelled 1..26 on disk.
EMNIST_FIRST_LABEL = {"digits": 0, "letters": 1, "balanced": 0}


def bar_images(labels: np.ndarray, n_classes: int, size: int, seed: int) -> np.ndarray:
    """``(N, size, size)`` uint8: a bright row at a class-dependent height, plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (len(labels), size, size)).astype(np.uint8)
    rows = (np.asarray(labels) * (size - 2)) // max(1, n_classes - 1) + 1
    for k, r in enumerate(rows):
        x[k, r - 1:r + 1, 2:size - 2] = 255
    return x


def _labels(n: int, n_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % n_classes)


def write_idx(images: np.ndarray, labels: np.ndarray, image_path: Path,
              label_path: Path) -> None:
    """IDX3 images (magic 2051) and IDX1 labels (magic 2049), big-endian sizes."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    image_path.write_bytes(struct.pack(">IIII", 0x803, n, h, w)
                           + images.astype(np.uint8).tobytes())
    label_path.write_bytes(struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, name: str, n_train: int = 60, n_test: int = 30) -> None:
    """``ROOT/<MNIST|FashionMNIST|KMNIST>/raw/`` with the four IDX files."""
    raw = Path(root) / MNIST_FOLDERS[name] / "raw"
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        y = _labels(n, 10, seed)
        images, labels = IDX_NAMES[split]
        write_idx(bar_images(y, 10, 28, seed), y, raw / images, raw / labels)


def write_emnist(root: Path, split: str, n_train: int = 60, n_test: int = 30) -> None:
    """``ROOT/EMNIST/raw/emnist-SPLIT-{train,test}-*-ubyte`` (images stored transposed,
    as EMNIST's are)."""
    raw = Path(root) / "EMNIST" / "raw"
    k = EMNIST_CLASSES[split]
    for part, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        y = _labels(n, k, seed)
        x = bar_images(y, k, 28, seed).transpose(0, 2, 1)
        write_idx(x, y + EMNIST_FIRST_LABEL[split],
                  raw / f"emnist-{split}-{part}-images-idx3-ubyte",
                  raw / f"emnist-{split}-{part}-labels-idx1-ubyte")


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 30) -> None:
    """``ROOT/cifar-10-batches-py/``: five training batches, the test batch and the meta
    file, pickled dicts of ``data`` (N, 3072) uint8 rows (R, G, B planes) and ``labels``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        y = _labels(n, 10, 10 + k)
        grey = bar_images(y, 10, 32, 10 + k)
        rgb = np.stack([grey, grey // 2, 255 - grey], 1)  # (N, 3, 32, 32)
        entry = {"batch_label": name, "labels": y.tolist(),
                 "data": rgb.reshape(n, -1).astype(np.uint8), "filenames": []}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": per_batch,
            "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def nmnist_events(label: int, seed: int, duration_us: int = 300_000) -> np.ndarray:
    """Events ``(x, y, t_us, p)`` of one recording (about 5,000, as real ones have): a
    bar at a label-dependent height sweeping right, ON events at its front and OFF
    events behind, plus noise."""
    rng = np.random.default_rng(seed)
    row = 3 + 3 * label
    events = []
    for t in range(0, duration_us, 1000):
        x = 2 + (t // 4000) % 26
        for y in (row, row + 1):
            for dx in range(4):
                events.append((x + dx + 1, y, t + int(rng.integers(0, 1000)), 1))
                events.append((x + dx, y, t + int(rng.integers(0, 1000)), 0))
        for _ in range(2):
            events.append((int(rng.integers(0, 34)), int(rng.integers(0, 34)),
                           t + int(rng.integers(0, 1000)), int(rng.integers(0, 2))))
    ev = np.array(events, dtype=np.int64)
    return ev[np.argsort(ev[:, 2], kind="stable")]


def encode_nmnist(events: np.ndarray) -> bytes:
    """N-MNIST's 40-bit records: x, y, then polarity (bit 7) and a 23-bit microsecond
    timestamp over three bytes, as tonic's ``read_mnist_file`` decodes them."""
    x, y, t, p = (events[:, k].astype(np.uint32) for k in range(4))
    out = np.zeros((len(events), 5), np.uint8)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    return out.tobytes()


def write_nmnist(root: Path, per_class_train: int = 6, per_class_test: int = 3) -> None:
    """``ROOT/NMNIST/{Train,Test}/<digit>/NNNNN.bin`` recordings."""
    for split, per, seed in (("Train", per_class_train, 20), ("Test", per_class_test, 40)):
        for digit in range(10):
            folder = Path(root) / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per):
                events = nmnist_events(digit, seed + 100 * digit + k)
                (folder / f"{k:05d}.bin").write_bytes(encode_nmnist(events))


def write_all(root: Path) -> None:
    """Every dataset that is read from the data root, tiny."""
    for name in MNIST_FOLDERS:
        write_mnist_like(root, name)
    for split in EMNIST_CLASSES:
        write_emnist(root, split, n_train=2 * EMNIST_CLASSES[split] + 20,
                     n_test=EMNIST_CLASSES[split] + 10)
    write_cifar10(root)
    write_nmnist(root)


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
