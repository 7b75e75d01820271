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
    become the server's public, class-disjoint data.
    """

    data_dir: Path | None = None
    seed: int = 0
    image_size: int | None = None
    num_classes: int | None = None
    test_fraction: float = 0.2
    public_fraction: float = 0.2


Loader = Callable[[DataOptions], DatasetSplits]
DATASETS: Registry[Loader] = Registry("dataset")
