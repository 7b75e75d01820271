"""The dataset registry and the options every loader understands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedls.data.base import DatasetSplits
from fedls.registry import Registry


@dataclass(frozen=True)
class DataOptions:
    """What a loader needs: where the files are, the split seed, and the resolution.

    ``image_size`` of ``None`` keeps each dataset's native size. ``num_classes`` limits
    identity datasets (CelebA, ImageFolder) to the classes with the most samples; the rest
    become the server's public, class-disjoint data. ``samples_per_class`` caps the private
    training split (seed 001 Appx. C.3); test and public data are unchanged.
    """

    data_dir: Path | None = None
    seed: int = 0
    image_size: int | None = None
    num_classes: int | None = None
    test_fraction: float = 0.2
    public_fraction: float = 0.2
    samples_per_class: int | None = None  # cap on private training samples per class


Loader = Callable[[DataOptions], DatasetSplits]
DATASETS: Registry[Loader] = Registry("dataset")
