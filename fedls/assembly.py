"""Assembly: the dataset, the client shards and the global model every participant agrees on.

Built from a :class:`~fedls.config.RunConfig` without Flower, so stand-alone attacks, analysis
and ``compare`` read runs and rebuild models exactly as the federation does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedls.config import RunConfig
from fedls.data import DataOptions, DatasetSplits, load_dataset_cached, partition
from fedls.defenses import build_defense
from fedls.models import Classifier, build_model


def data_options(config: RunConfig) -> DataOptions:
    """The dataset options of a run (folder, seed, size, class selection, cap)."""
    return DataOptions(
        data_dir=Path(config.data_dir) if config.data_dir else None,
        seed=config.seed,
        image_size=config.image_size,
        num_classes=config.num_classes,
        samples_per_class=config.private_cap,
        public_split=config.public_split,
    )


def load_splits(config: RunConfig) -> DatasetSplits:
    """The run's dataset (cached per process)."""
    return load_dataset_cached(config.dataset, data_options(config))


def client_partition(config: RunConfig, splits: DatasetSplits) -> list[np.ndarray]:
    """Indices into ``splits.train`` held by each client (deterministic in the run's seed)."""
    return partition(splits.train_targets, config.clients, config.partition, config.seed, config.dirichlet_beta)


def build_global_model(config: RunConfig, splits: DatasetSplits) -> Classifier:
    """The architecture every participant agrees on (defense changes included)."""
    defense = build_defense(config.defense, config.defense_options)
    model = build_model(config.model, splits.image_shape, splits.num_classes, Path(config.weights) if config.weights else None)
    return defense.prepare_model(model)
