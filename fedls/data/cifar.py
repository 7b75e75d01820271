"""CIFAR-10/100 through torchvision: downloaded when the network allows, else read from --data-dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fedls.data.base import ArrayDataset, DatasetSplits, public_from_official_train
from fedls.data.digits import resize
from fedls.data.registry import DATASETS, DataOptions
from fedls.errors import DataError

DEFAULT_ROOT = Path.home() / ".cache" / "fedls" / "data"


def _torchvision_split(name: str, root: Path, train: bool):  # noqa: ANN202 - torchvision type
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError:
        pass
    try:
        return cls(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any download failure means the same to the user
        raise DataError(
            f"{name} is not under {root} and could not be downloaded ({type(exc).__name__}); "
            f"put the extracted 'cifar-*-python' folder there and pass --data-dir"
        ) from None


def load_cifar(name: str, options: DataOptions) -> DatasetSplits:
    """Private and public classes as :func:`public_from_official_train` says for ``options.public_split``."""
    root = options.data_dir or DEFAULT_ROOT
    parts = {}
    for train in (True, False):
        raw = _torchvision_split(name, root, train)
        images = torch.from_numpy(np.asarray(raw.data)).permute(0, 3, 1, 2).contiguous()
        if options.image_size is not None and options.image_size != 32:
            images = resize(images.float() / 127.5 - 1.0, options.image_size)
        parts[train] = ArrayDataset(images, torch.as_tensor(raw.targets))
        classes = list(raw.classes)
    return public_from_official_train(
        name, parts[True], parts[False], options.public_split, options.public_fraction, options.seed, classes
    )


@DATASETS.register("cifar10")
def load_cifar10(options: DataOptions) -> DatasetSplits:
    return load_cifar("cifar10", options)


@DATASETS.register("cifar100")
def load_cifar100(options: DataOptions) -> DatasetSplits:
    return load_cifar("cifar100", options)
