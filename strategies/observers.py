"""What the curious server hands to its attacks, and the hook they implement.

Threat-model boundary (after breaching): an attack receives a :class:`ServerView` — the
model the server sent, the clients' replies as a server receives them, the declared
training hyper-parameters, and the server's public data. Ground truth (the true samples
behind a probe) travels in a separate :class:`GroundTruth` object that only metrics take.
The strategy builds both from each reply and strips the ground truth off the update, so an
attack cannot see it by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class ClientUpdate:
    """One client's reply as the server receives it.

    ``weights``: the client's model after local training (FedAvg), parameter name → array.
    ``gradient``: present only when the server asked this client for a FedSGD probe: the
    gradient of the client's real training loss on ``probe_batch`` samples, name → array.
    """

    node_id: int
    num_examples: int
    weights: dict[str, np.ndarray]
    metrics: dict[str, float]
    gradient: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class GroundTruth:
    """The true data behind one client's probe: for metrics only, never for attacks."""

    node_id: int
    images: torch.Tensor  # [B, C, H, W] in [-1, 1], exactly what the client fed the model
    targets: torch.Tensor  # [B, num_classes] soft targets used in the loss (smoothing / mixup)
    labels: torch.Tensor  # [B] hard labels (the dominant class)
    extra: dict[str, float] = field(default_factory=dict)  # e.g. alpha, mixup coefficient


@dataclass(frozen=True)
class RoundConfig:
    """Declared hyper-parameters of a round, as the server sent them to clients."""

    server_round: int
    alpha: float
    lr: float
    local_epochs: int
    batch_size: int
    values: dict[str, Any] = field(default_factory=dict)  # the whole train config


@dataclass(frozen=True)
class ServerView:
    """Everything an attack on client updates may use."""

    config: RoundConfig
    global_weights: dict[str, np.ndarray]  # what the server sent this round
    updates: list[ClientUpdate]


class RoundObserver(Protocol):
    """A hook on the server. Both methods return flat metrics (name → float) to log;
    images go to the ``log_image`` callable the server passes in."""

    def on_client_updates(
        self, view: ServerView, truth: dict[int, GroundTruth], log_image: ImageLogger
    ) -> dict[str, float]: ...

    def on_global_model(self, server_round: int, model: torch.nn.Module, log_image: ImageLogger) -> dict[str, float]: ...


class ImageLogger(Protocol):
    def __call__(self, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        """Log a grid of images in [-1, 1] ([N, C, H, W]) under ``tag`` for the current round."""
