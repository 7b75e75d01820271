"""scikit-learn's bundled handwritten digits: real data that ships offline (the default)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fedls.data.base import (
    ArrayDataset,
    DatasetSplits,
    chw_shape,
    class_disjoint_splits,
    disjoint_private_classes,
    split_indices,
)
from fedls.data.registry import DATASETS, DataOptions


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or size == images.shape[-1]:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


@DATASETS.register("digits")
def load_digits(options: DataOptions) -> DatasetSplits:
    """1,797 8×8 grey digits, 10 classes.

    ``public_split = "disjoint"`` (default): the private task is digits 0–4 (``test_fraction``
    of their images held out for testing), the server's public data are all images of digits
    5–9. ``"same-class"``: all 10 digits are private; ``test_fraction`` test, ``public_fraction``
    public (disjoint samples of the same classes), the rest private training data. Splits are
    fixed by ``options.seed``.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0
    images = resize(images, options.image_size)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    full = ArrayDataset(images, labels)
    names = [str(i) for i in range(10)]
    if options.public_split == "disjoint":
        private = disjoint_private_classes(10)
        members = np.flatnonzero(np.isin(labels.numpy(), private))
        test_idx, _ = split_indices(len(members), (options.test_fraction, 0.0), options.seed)
        rest = np.setdiff1d(np.arange(len(full)), members[test_idx])  # private train + every public-class image
        return class_disjoint_splits("digits", full.subset(rest), full.subset(members[test_idx]), names, private)
    test_idx, public_idx, train_idx = split_indices(
        len(full), (options.test_fraction, options.public_fraction, 0.0), options.seed
    )
    return DatasetSplits(
        name="digits",
        num_classes=10,
        image_shape=chw_shape(images),
        train=full.subset(train_idx),
        test=full.subset(test_idx),
        public=full.subset(public_idx),
        public_kind="samples",
        class_names=names,
    )
