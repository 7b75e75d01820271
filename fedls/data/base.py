"""What every dataset provides: private train/test splits and the server's public data."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

PublicKind = Literal["classes", "samples"]
PublicSplit = Literal["disjoint", "same-class"]


class SizedDataset(Dataset[tuple[torch.Tensor, Any]]):
    """A map-style dataset of (image, label) pairs that knows its length (torch's ``Dataset``
    does not declare ``__len__``)."""

    @abstractmethod
    def __len__(self) -> int: ...


# Every dataset fedls hands around: its own datasets and torch's subsets of them.
ImageDataset: TypeAlias = SizedDataset | Subset[Any] | TensorDataset


def chw_shape(images: torch.Tensor) -> tuple[int, int, int]:
    """``(C, H, W)`` of a batch of images ``[N, C, H, W]``."""
    c, h, w = images.shape[1:]
    return int(c), int(h), int(w)


class ArrayDataset(SizedDataset):
    """Images held in memory as a float tensor in [-1, 1] (μ = σ = 0.5, Struppek et al. (2024) Appx. B.3)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if image.dtype == torch.uint8:  # large datasets stay compact in memory
            image = image.float() / 127.5 - 1.0
        return image, int(self.labels[index])

    @property
    def targets(self) -> np.ndarray:
        return self.labels.numpy()

    def subset(self, indices: np.ndarray | list[int]) -> ArrayDataset:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ArrayDataset(self.images[idx], self.labels[idx])


@dataclass
class DatasetSplits:
    """A dataset as fedls uses it.

    ``train`` is the clients' private training data (partitioned among them), ``test`` the
    held-out private test split for utility. ``public`` is the curious server's auxiliary
    data for the generative prior. ``public_kind`` says what it shares with the private task:

    * ``"classes"`` (the default for every dataset): the public data holds only classes or
      identities the private task does not contain, as Struppek et al.'s (2024) FFHQ prior shares no
      identity with FaceScrub/CelebA (Struppek et al. 2024, §4.1). An attack must then
      extract the private classes from the target; the prior cannot already draw them.
    * ``"samples"``: disjoint samples of the *same* classes (``public_split = "same-class"``),
      a weaker threat setting in which the prior already generates every private class and
      the attack may only have to pick prior samples (labels are still never handed to it).
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    train: ImageDataset
    test: ImageDataset
    public: ImageDataset
    public_kind: PublicKind
    class_names: list[str] = field(default_factory=list)

    @property
    def train_targets(self) -> np.ndarray:
        return dataset_targets(self.train)

    def describe(self) -> str:
        c, h, w = self.image_shape
        return (
            f"{self.name}: {len(self.train)} private train / {len(self.test)} test / "
            f"{len(self.public)} public ({self.public_kind}-disjoint), {self.num_classes} classes, {c}x{h}x{w}"
        )


class LabelledSubset(SizedDataset):
    """A subset that still knows its labels without loading images."""

    def __init__(self, dataset: ImageDataset, indices: np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self._targets = dataset_targets(dataset)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.dataset[int(self.indices[index])]

    @property
    def targets(self) -> np.ndarray:
        return self._targets


def cap_per_class(dataset: ImageDataset, samples_per_class: int, seed: int) -> SizedDataset:
    """Keep at most ``samples_per_class`` samples of every class, drawn with ``seed``
    (the training-set-size experiments of Struppek et al. (2024) Appx. C.3)."""
    targets = dataset_targets(dataset)
    order = np.random.default_rng(seed).permutation(len(targets))
    kept: list[int] = []
    counts: dict[int, int] = {}
    for index in order:
        label = int(targets[index])
        if counts.get(label, 0) < samples_per_class:
            counts[label] = counts.get(label, 0) + 1
            kept.append(int(index))
    indices = np.sort(np.asarray(kept, dtype=np.int64))
    if isinstance(dataset, ArrayDataset):
        return dataset.subset(indices)
    return LabelledSubset(dataset, indices)


def dataset_targets(dataset: ImageDataset) -> np.ndarray:
    """Labels of a dataset as an integer array, without loading images where possible."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map images in [-1, 1] to [0, 1] for display and image metrics."""
    return (images.clamp(-1, 1) + 1) / 2


def split_indices(
    n: int, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into consecutive parts of the given fractions.

    The last part takes the remainder so that the parts cover every index exactly once.
    """
    order = np.random.default_rng(seed).permutation(n)
    parts: list[np.ndarray] = []
    start = 0
    for frac in fractions[:-1]:
        stop = start + int(round(frac * n))
        parts.append(np.sort(order[start:stop]))
        start = stop
    parts.append(np.sort(order[start:]))
    return parts


def disjoint_private_classes(num_classes: int) -> list[int]:
    """The private classes of a labelled dataset under ``public_split = "disjoint"``: the first
    half (0–4 of 10, 0–49 of 100); the other half is the server's public data. Halving keeps
    the prior's domain (digits, clothes, objects) while sharing no class with the target."""
    return list(range(num_classes // 2))


def _select_classes(dataset: ArrayDataset, classes: list[int]) -> ArrayDataset:
    """The samples of ``classes``, relabelled 0..len(classes)-1 in the order given."""
    keep = np.flatnonzero(np.isin(dataset.labels.numpy(), classes))
    subset = dataset.subset(keep)
    relabel = torch.full((int(dataset.labels.max()) + 1,), -1, dtype=torch.long)
    relabel[torch.as_tensor(classes)] = torch.arange(len(classes))
    return ArrayDataset(subset.images, relabel[subset.labels])


def class_disjoint_splits(
    name: str, train_all: ArrayDataset, test_all: ArrayDataset, class_names: list[str], private: list[int]
) -> DatasetSplits:
    """Private task = the ``private`` classes (train and test, relabelled 0..k-1); the server's
    public data = every training image of the other classes. Public labels keep their original
    class ids (they are never handed to an attack)."""
    public_classes = [c for c in range(len(class_names)) if c not in private]
    public = train_all.subset(np.flatnonzero(np.isin(train_all.labels.numpy(), public_classes)))
    return DatasetSplits(
        name=name,
        num_classes=len(private),
        image_shape=chw_shape(train_all.images),
        train=_select_classes(train_all, private),
        test=_select_classes(test_all, private),
        public=public,
        public_kind="classes",
        class_names=[class_names[c] for c in private],
    )


def public_from_official_train(
    name: str, train_all: ArrayDataset, test: ArrayDataset, public_split: PublicSplit, public_fraction: float, seed: int,
    class_names: list[str],
) -> DatasetSplits:
    """Datasets with an official train/test split.

    ``"disjoint"``: see :func:`class_disjoint_splits` (private classes from
    :func:`disjoint_private_classes`). ``"same-class"``: a seeded ``public_fraction`` of the
    official training images (all classes) is the public data, the rest is private training
    data, and the official test split is the test set."""
    if public_split == "disjoint":
        return class_disjoint_splits(name, train_all, test, class_names, disjoint_private_classes(len(class_names)))
    public_idx, train_idx = split_indices(len(train_all), (public_fraction, 0.0), seed)
    return DatasetSplits(
        name=name,
        num_classes=len(class_names),
        image_shape=chw_shape(train_all.images),
        train=train_all.subset(train_idx),
        test=test,
        public=train_all.subset(public_idx),
        public_kind="samples",
        class_names=class_names,
    )


def dataset_tensors(dataset: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1] and labels of a whole (small) dataset as two tensors."""
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
        return x, labels.long()
    pairs = [dataset[i] for i in range(len(dataset))]
    return torch.stack([torch.as_tensor(p[0]) for p in pairs]).float(), torch.tensor([int(p[1]) for p in pairs])
