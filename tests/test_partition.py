from __future__ import annotations

import numpy as np
import pytest

from fedls.data import partition
from fedls.errors import ConfigError

LABELS = np.repeat(np.arange(10), 60)


@pytest.mark.parametrize("method", ["iid", "dirichlet", "by-class"])
@pytest.mark.parametrize("clients", [1, 3, 10, 25])
def test_shards_are_disjoint_and_cover_everything(method: str, clients: int) -> None:
    shards = partition(LABELS, clients, method, seed=3, beta=0.5)
    assert len(shards) == clients
    joined = np.concatenate(shards)
    assert len(joined) == len(LABELS)
    assert len(np.unique(joined)) == len(LABELS)
    assert all(len(s) > 0 for s in shards)


@pytest.mark.parametrize("method", ["iid", "dirichlet", "by-class"])
def test_same_seed_same_shards(method: str) -> None:
    a = partition(LABELS, 7, method, seed=11, beta=0.3)
    b = partition(LABELS, 7, method, seed=11, beta=0.3)
    c = partition(LABELS, 7, method, seed=12, beta=0.3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def _mean_label_entropy(shards: list[np.ndarray]) -> float:
    values = []
    for shard in shards:
        p = np.bincount(LABELS[shard], minlength=10) / len(shard)
        p = p[p > 0]
        values.append(-(p * np.log(p)).sum())
    return float(np.mean(values))


def test_dirichlet_skew_grows_as_beta_shrinks() -> None:
    entropies = [
        np.mean([_mean_label_entropy(partition(LABELS, 10, "dirichlet", s, beta)) for s in range(5)])
        for beta in (100.0, 1.0, 0.1)
    ]
    assert entropies[0] > entropies[1] > entropies[2]
    assert entropies[0] > 2.2  # near-uniform labels per client (ln 10 ≈ 2.30)


def test_by_class_gives_each_client_few_classes() -> None:
    shards = partition(LABELS, 5, "by-class", seed=0)
    assert all(len(np.unique(LABELS[s])) == 2 for s in shards)


def test_bad_requests_have_clear_errors() -> None:
    with pytest.raises(ConfigError, match="at least 1 client"):
        partition(LABELS, 0, "iid", 0)
    with pytest.raises(ConfigError, match="unknown partition"):
        partition(LABELS, 2, "zipf", 0)
    with pytest.raises(ConfigError, match="beta must be > 0"):
        partition(LABELS, 2, "dirichlet", 0, beta=0.0)
