"""The dataset registry and the options every loader understands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedls.data.base import DatasetSplits, PublicSplit
from fedls.registry import Registry


@dataclass(frozen=True)
class DataOptions:
    """What a loader needs: where the files are, the split seed, and the resolution.

    ``image_size`` of ``None`` keeps each dataset's native size. ``num_classes`` limits
    identity datasets (CelebA, ImageFolder) to the classes with the most samples; the rest
    become the server's public, class-disjoint data. ``samples_per_class`` caps the private
    training split (Struppek et al. 2024, Appx. C.3); test and public data are unchanged.

    ``public_split`` decides the server's public data for digits, MNIST, Fashion-MNIST and
    CIFAR: ``"disjoint"`` (default) keeps half of the classes private and gives the server
    the other half (class-disjoint, as in Struppek et al. (2024)); ``"same-class"`` is the weaker threat
    setting in which the public data are ``public_fraction`` of the images of every class.
    Identity datasets (CelebA, ImageFolder) are always class-disjoint.
    """

    data_dir: Path | None = None
    seed: int = 0
    image_size: int | None = None
    num_classes: int | None = None
    test_fraction: float = 0.2
    public_fraction: float = 0.2
    samples_per_class: int | None = None  # cap on private training samples per class
    public_split: PublicSplit = "disjoint"


Loader = Callable[[DataOptions], DatasetSplits]
DATASETS: Registry[Loader] = Registry("dataset")
