from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fedls.data import DataOptions, load_dataset
from fedls.data.idx import read_idx
from fedls.errors import DataError
from fedls.models import MODELS, build_model


def test_digits_splits_are_disjoint_and_in_range() -> None:
    splits = load_dataset("digits", DataOptions(seed=0))
    assert splits.num_classes == 10 and splits.image_shape == (1, 8, 8)
    assert len(splits.train) + len(splits.test) + len(splits.public) == 1797
    all_images = torch.cat([splits.train.images, splits.test.images, splits.public.images])
    assert all_images.min() >= -1 and all_images.max() <= 1
    # disjoint: no image of the public split appears among the private training images
    train_rows = {tuple(x.flatten().tolist()) for x in splits.train.images}
    overlap = sum(tuple(x.flatten().tolist()) in train_rows for x in splits.public.images)
    assert overlap < 5  # the digits set itself holds a few exact duplicates


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder_loads_like_fashion_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    splits = load_dataset("fashion-mnist", DataOptions(data_dir=tmp_path, public_fraction=0.2))
    assert (len(splits.train), len(splits.public), len(splits.test)) == (40, 10, 20)
    image, label = splits.train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and -1 <= image.min() <= image.max() <= 1
    assert 0 <= label < 10


def test_truncated_idx_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist", DataOptions(data_dir=tmp_path / "nope"))


def test_image_folder_keeps_top_identities_private(tmp_path: Path) -> None:
    from PIL import Image

    counts = {"a": 6, "b": 5, "c": 4, "d": 2}
    for identity, n in counts.items():
        (tmp_path / identity).mkdir()
        for i in range(n):
            Image.fromarray(np.full((10, 10, 3), i * 20, np.uint8)).save(tmp_path / identity / f"{i}.png")
    splits = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, num_classes=2, image_size=16, test_fraction=0.2))
    assert splits.num_classes == 2 and splits.class_names == ["a", "b"] and splits.public_kind == "classes"
    assert len(splits.train) + len(splits.test) == 11 and len(splits.public) == 6
    assert splits.train[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("name", ["cnn", "cnn-nobias", "mlp", "resnet18"])
def test_models_meet_the_classifier_contract(name: str) -> None:
    model = build_model(name, (1, 8, 8), 10)
    x = torch.randn(3, 1, 8, 8)
    features, hidden = model.features_and_hidden(x)
    assert features.shape == (3, model.feature_dim) and hidden
    assert torch.allclose(model(x), model.head(features), atol=1e-5)
    assert name in MODELS


def test_samples_per_class_caps_only_the_private_training_data() -> None:
    full = load_dataset("digits", DataOptions(seed=3))
    capped = load_dataset("digits", DataOptions(seed=3, samples_per_class=20))
    assert np.bincount(capped.train_targets).tolist() == [20] * 10
    assert len(capped.test) == len(full.test) and len(capped.public) == len(full.public)
    again = load_dataset("digits", DataOptions(seed=3, samples_per_class=20))
    assert torch.equal(capped.train.images, again.train.images)
    # the capped set is a subset of the full private training set
    rows = {tuple(x.flatten().tolist()) for x in full.train.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in capped.train.images)
