"""Identity datasets read from disk: any ImageFolder tree (e.g. FaceScrub crops) and CelebA.

Both follow the model-inversion protocol of Struppek et al. (2024) §4.1: the private task is the
``num_classes`` identities with the most images; the remaining identities are the curious
server's public data (class-disjoint, like the FFHQ prior of the paper).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fedls.data.base import DatasetSplits, SizedDataset
from fedls.data.registry import DATASETS, DataOptions
from fedls.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class FileDataset(SizedDataset):
    """Images loaded lazily from files, resized to a square and scaled to [-1, 1]."""

    def __init__(self, paths: list[Path], labels: list[int], size: int) -> None:
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as img:
            resized = img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
            array = np.asarray(resized, dtype=np.float32)
        tensor = torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0
        return tensor, int(self.labels[index])

    @property
    def targets(self) -> np.ndarray:
        return self.labels


def split_identities(
    samples: list[tuple[Path, str]], options: DataOptions, default_classes: int, name: str
) -> DatasetSplits:
    """Top-N identities by count are private (split per identity into train/test); the rest are public."""
    if not samples:
        raise DataError(f"no images found for {name}; check --data-dir")
    counts = Counter(identity for _, identity in samples)
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    wanted = options.num_classes or min(default_classes, max(1, int(len(ranked) * 0.8)))
    if wanted > len(ranked):
        raise DataError(f"{name} has {len(ranked)} identities, fewer than the {wanted} asked for; lower --num-classes")
    private = ranked[:wanted]
    index_of = {identity: i for i, identity in enumerate(private)}
    rng = np.random.default_rng(options.seed)
    by_identity: dict[str, list[Path]] = {}
    for path, identity in samples:
        by_identity.setdefault(identity, []).append(path)
    train: tuple[list[Path], list[int]] = ([], [])
    test: tuple[list[Path], list[int]] = ([], [])
    for identity in private:
        paths = sorted(by_identity[identity])
        order = rng.permutation(len(paths))
        n_test = max(1, int(round(options.test_fraction * len(paths)))) if len(paths) > 1 else 0
        for rank, i in enumerate(order):
            target = test if rank < n_test else train
            target[0].append(paths[i])
            target[1].append(index_of[identity])
    public_ids = ranked[wanted:]
    public_paths = [p for identity in public_ids for p in sorted(by_identity[identity])]
    public_labels = [wanted + i for i, identity in enumerate(public_ids) for _ in by_identity[identity]]
    size = options.image_size or 64
    return DatasetSplits(
        name=name,
        num_classes=wanted,
        image_shape=(3, size, size),
        train=FileDataset(*train, size),
        test=FileDataset(*test, size),
        public=FileDataset(public_paths, public_labels, size),
        public_kind="classes",
        class_names=private,
    )


@DATASETS.register("imagefolder")
def load_image_folder(options: DataOptions) -> DatasetSplits:
    """``data_dir/<identity>/<image>`` (e.g. FaceScrub crops written by scripts/prepare_faces.py)."""
    root = options.data_dir
    if root is None or not root.is_dir():
        raise DataError(f"imagefolder needs --data-dir pointing at a folder of class sub-folders (got {root})")
    samples = [
        (path, folder.name)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return split_identities(samples, options, default_classes=10**9, name="imagefolder")


@DATASETS.register("celeba")
def load_celeba(options: DataOptions) -> DatasetSplits:
    """CelebA: ``data_dir/identity_CelebA.txt`` and images in ``data_dir/img_align_celeba`` (or a
    cropped copy); the 1,000 identities with most images are private (Struppek et al. 2024, §4.1)."""
    root = options.data_dir
    if root is None or not (root / "identity_CelebA.txt").is_file():
        raise DataError(f"celeba needs --data-dir with identity_CelebA.txt and img_align_celeba/ (got {root})")
    image_dir = root / "img_align_celeba"
    if not image_dir.is_dir():
        raise DataError(f"{image_dir} is missing; extract img_align_celeba there")
    samples: list[tuple[Path, str]] = []
    for line in (root / "identity_CelebA.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and (image_dir / parts[0]).exists():
            samples.append((image_dir / parts[0], parts[1]))
    return split_identities(samples, options, default_classes=1000, name="celeba")
