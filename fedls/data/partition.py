"""Split the private training data among clients: IID, Dirichlet label skew, per-class shards."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedls.errors import ConfigError
from fedls.registry import Registry

Partitioner = Callable[[np.ndarray, int, int, float], list[np.ndarray]]
PARTITIONERS: Registry[Partitioner] = Registry("partition")


def _check(labels: np.ndarray, num_clients: int) -> None:
    if num_clients < 1:
        raise ConfigError("need at least 1 client; pass --clients 1 or more")
    if num_clients > len(labels):
        raise ConfigError(
            f"{num_clients} clients but only {len(labels)} training samples; use fewer clients"
        )


@PARTITIONERS.register("iid")
def iid(labels: np.ndarray, num_clients: int, seed: int, beta: float = 0.0) -> list[np.ndarray]:
    """Uniformly random, (almost) equal-sized shards."""
    _check(labels, num_clients)
    order = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


@PARTITIONERS.register("dirichlet")
def dirichlet(labels: np.ndarray, num_clients: int, seed: int, beta: float = 0.5) -> list[np.ndarray]:
    """Label skew: for each class, client proportions ~ Dirichlet(β·1); smaller β, more skew.

    Every client is guaranteed at least one sample: empty clients take one sample from the
    largest shard, so that every Flower client can train.
    """
    _check(labels, num_clients)
    if beta <= 0:
        raise ConfigError(f"Dirichlet beta must be > 0 (got {beta}); e.g. --dirichlet-beta 0.5")
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = [[] for _ in range(num_clients)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        proportions = rng.dirichlet(np.full(num_clients, beta))
        cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
        for client, part in enumerate(np.split(members, cuts)):
            shards[client].extend(part.tolist())
    for client in range(num_clients):
        if not shards[client]:
            donor = max(range(num_clients), key=lambda c: len(shards[c]))
            shards[client].append(shards[donor].pop())
    return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]


@PARTITIONERS.register("by-class")
def by_class(labels: np.ndarray, num_clients: int, seed: int, beta: float = 0.0) -> list[np.ndarray]:
    """Per-class (per-identity) sharding: each class belongs to exactly one client.

    With more clients than classes, a class is split among the clients that share it, so
    that every client still sees few classes (the pathological non-IID case).
    """
    _check(labels, num_clients)
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    if num_clients <= len(classes):
        owners = np.array_split(classes, num_clients)
        return [np.sort(np.flatnonzero(np.isin(labels, own))) for own in owners]
    # More clients than classes: give each class to a group of clients and split its samples.
    groups = np.array_split(np.arange(num_clients), len(classes))
    shards: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_clients
    for cls, group in zip(classes, groups, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if len(members) < len(group):
            raise ConfigError(
                f"class {cls} has {len(members)} samples for {len(group)} clients; use fewer clients"
            )
        for client, part in zip(group, np.array_split(members, len(group)), strict=True):
            shards[int(client)] = np.sort(part)
    return shards


def partition(
    labels: np.ndarray, num_clients: int, method: str, seed: int, beta: float = 0.5
) -> list[np.ndarray]:
    """Indices of each client's shard; disjoint, covering every sample, same seed → same shards."""
    return PARTITIONERS.get(method)(np.asarray(labels), num_clients, seed, beta)
