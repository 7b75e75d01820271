"""Datasets by name. ``load_dataset("digits")`` works offline; see :data:`DATASETS` for the rest."""

from __future__ import annotations

from functools import lru_cache

from fedls.data import cifar, digits, faces, idx  # noqa: F401  (registration)
from fedls.data.base import (
    ArrayDataset,
    DatasetSplits,
    ImageDataset,
    SizedDataset,
    cap_per_class,
    dataset_targets,
    dataset_tensors,
    to_unit_range,
)
from fedls.data.partition import PARTITIONERS, partition
from fedls.data.registry import DATASETS, DataOptions
from fedls.errors import ConfigError


def load_dataset(name: str, options: DataOptions | None = None) -> DatasetSplits:
    options = options or DataOptions()
    if options.public_split not in ("disjoint", "same-class"):
        raise ConfigError(f"public_split must be disjoint or same-class (got {options.public_split!r})")
    splits = DATASETS.get(name)(options)
    if options.samples_per_class is not None:
        splits.train = cap_per_class(splits.train, options.samples_per_class, options.seed)
    return splits


@lru_cache(maxsize=4)
def load_dataset_cached(name: str, options: DataOptions) -> DatasetSplits:
    """Per-process cache: each Flower client process loads a dataset once, not once per round."""
    return load_dataset(name, options)


__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DataOptions",
    "DatasetSplits",
    "ImageDataset",
    "SizedDataset",
    "PARTITIONERS",
    "dataset_targets",
    "dataset_tensors",
    "load_dataset",
    "load_dataset_cached",
    "partition",
    "to_unit_range",
]
