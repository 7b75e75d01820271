from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fedls.data import DataOptions, load_dataset
from fedls.data.idx import read_idx
from fedls.errors import ConfigError, DataError
from fedls.models import MODELS, build_model


def _rows(images: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(x.flatten().tolist()) for x in images}


def test_digits_default_is_class_disjoint() -> None:
    splits = load_dataset("digits", DataOptions(seed=0))
    assert splits.public_kind == "classes" and splits.num_classes == 5 and splits.image_shape == (1, 8, 8)
    assert splits.class_names == ["0", "1", "2", "3", "4"]
    # the private task (train and test) holds digits 0-4 only; the public data digits 5-9 only
    assert set(splits.train.labels.tolist()) == set(splits.test.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(splits.public.labels.tolist()) == {5, 6, 7, 8, 9}
    assert len(splits.train) + len(splits.test) + len(splits.public) == 1797
    assert len(splits.test) == pytest.approx(0.2 * (len(splits.train) + len(splits.test)), abs=1)
    all_images = torch.cat([splits.train.images, splits.test.images, splits.public.images])
    assert all_images.min() >= -1 and all_images.max() <= 1
    # the private labels are the original digits: an image labelled 3 is a 3 of the bundled set
    from sklearn.datasets import load_digits

    bunch = load_digits()
    threes = _rows(torch.tensor(bunch.images[bunch.target == 3], dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0)
    assert _rows(splits.train.images[splits.train.labels == 3]) <= threes
    assert "classes-disjoint" in splits.describe()


def test_digits_same_class_split_is_the_named_weaker_setting() -> None:
    splits = load_dataset("digits", DataOptions(seed=0, public_split="same-class"))
    assert splits.public_kind == "samples" and splits.num_classes == 10
    assert set(splits.public.labels.tolist()) == set(range(10))
    assert len(splits.train) + len(splits.test) + len(splits.public) == 1797
    # disjoint samples: no image of the public split appears among the private training images
    overlap = sum(row in _rows(splits.train.images) for row in _rows(splits.public.images))
    assert overlap < 5  # the digits set itself holds a few exact duplicates


def test_unknown_public_split_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="public_split"):
        load_dataset("digits", DataOptions(public_split="half"))  # type: ignore[arg-type]


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder_loads_like_fashion_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = {}
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        labels[prefix] = np.arange(n) % 10
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels[prefix])
    splits = load_dataset("fashion-mnist", DataOptions(data_dir=tmp_path))
    # class-disjoint: private = T-shirt..Coat (0-4) of the official splits, public = the other official train images
    assert splits.public_kind == "classes" and splits.num_classes == 5
    assert splits.class_names == ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"]
    assert (len(splits.train), len(splits.public), len(splits.test)) == (30, 30, 10)
    assert set(splits.public.labels.tolist()) == {5, 6, 7, 8, 9}
    image, label = splits.train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and -1 <= image.min() <= image.max() <= 1
    assert 0 <= label < 5
    same = load_dataset("fashion-mnist", DataOptions(data_dir=tmp_path, public_split="same-class", public_fraction=0.2))
    assert same.public_kind == "samples" and same.num_classes == 10
    assert (len(same.train), len(same.public), len(same.test)) == (48, 12, 20)


def test_cifar100_disjoint_split_halves_the_classes() -> None:
    from fedls.data.base import ArrayDataset, class_disjoint_splits, disjoint_private_classes

    images = torch.zeros(200, 3, 4, 4, dtype=torch.uint8)
    labels = torch.arange(200) % 100
    names = [f"c{i}" for i in range(100)]
    splits = class_disjoint_splits("cifar100", ArrayDataset(images, labels), ArrayDataset(images[:100], labels[:100]), names,
                                   disjoint_private_classes(100))
    assert splits.num_classes == 50 and splits.class_names == names[:50]
    assert set(splits.train.labels.tolist()) == set(range(50)) and set(splits.public.labels.tolist()) == set(range(50, 100))
    assert len(splits.test) == 50


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
    assert np.bincount(capped.train_targets).tolist() == [20] * 5
    assert len(capped.test) == len(full.test) and len(capped.public) == len(full.public)
    again = load_dataset("digits", DataOptions(seed=3, samples_per_class=20))
    assert torch.equal(capped.train.images, again.train.images)
    # the capped set is a subset of the full private training set
    rows = {tuple(x.flatten().tolist()) for x in full.train.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in capped.train.images)
