"""MNIST and Fashion-MNIST from a folder of idx files (the format LeCun's site and Debian ship)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from fedls.data.base import ArrayDataset, DatasetSplits, public_from_official_train
from fedls.data.digits import resize
from fedls.data.registry import DATASETS, DataOptions
from fedls.errors import DataError

DEFAULT_DIRS = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
    "mnist": [Path("/usr/share/datasets/mnist")],
}
INSTALL_HINT = {
    "fashion-mnist": "pass --data-dir FOLDER with the idx files, or `apt-get install dataset-fashion-mnist`",
    "mnist": "pass --data-dir FOLDER with the idx files (train-images-idx3-ubyte[.gz], ...)",
}
FASHION_CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic (0, 0, dtype=0x08, ndim), big-endian dims, bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}; check the file or re-download it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file; re-download it")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({payload.size} of {int(np.prod(dims))} bytes); re-download it")
    return payload.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder} has no {stem}[.gz]")


def _resolve_dir(name: str, data_dir: Path | None) -> Path:
    candidates = [data_dir] if data_dir is not None else DEFAULT_DIRS[name]
    for folder in candidates:
        if folder is not None and folder.is_dir():
            return folder
    where = data_dir if data_dir is not None else ", ".join(str(p) for p in DEFAULT_DIRS[name])
    raise DataError(f"no {name} data found at {where}; {INSTALL_HINT[name]}")


def load_idx_dataset(name: str, options: DataOptions) -> DatasetSplits:
    """Private and public classes as :func:`public_from_official_train` says for ``options.public_split``."""
    folder = _resolve_dir(name, options.data_dir)
    try:
        arrays = {
            stem: read_idx(_find(folder, stem))
            for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        }
    except DataError as exc:
        raise DataError(f"{exc}; {INSTALL_HINT[name]}") from None

    def as_dataset(images: np.ndarray, labels: np.ndarray) -> ArrayDataset:
        tensor = torch.from_numpy(images.copy()).unsqueeze(1)
        if options.image_size is not None and options.image_size != tensor.shape[-1]:
            tensor = resize(tensor.float() / 127.5 - 1.0, options.image_size)
        return ArrayDataset(tensor, torch.from_numpy(labels.astype(np.int64)))

    train_all = as_dataset(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"])
    test = as_dataset(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    return public_from_official_train(name, train_all, test, options.public_split, options.public_fraction, options.seed, classes)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(options: DataOptions) -> DatasetSplits:
    return load_idx_dataset("fashion-mnist", options)


@DATASETS.register("mnist")
def load_mnist(options: DataOptions) -> DatasetSplits:
    return load_idx_dataset("mnist", options)
