"""The threat model as types: what a curious server sees, and what only the scorers see.

After breaching (Geiping et al.): the view and the truth are produced apart, at the source.

* :class:`ServerView` — what the server holds in a round: the model it sent, the clients'
  replies (:class:`ClientUpdate`), and the :class:`ClientRecipe` it declared. An *attack*
  takes a view (and, for model inversion, the global model and the server's public data)
  and returns a result. No attack signature contains ground truth; ``fedls.attacks``
  cannot even import the scorers (``tests/test_architecture.py`` enforces it).
* :class:`GroundTruth` — what a client really trained on (simulation only). A *scorer*
  (``fedls.metrics``) takes an attack's result plus the truth and returns metrics.

The server (``fedls.federation``) composes the two roles; nothing else hands truth around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from fedls.schema import Options

OptimizerName = Literal["sgd", "adam"]
ProbeMode = Literal["fedsgd", "fedavg"]
SGD_MOMENTUM = 0.9  # the clients' SGD momentum: part of the declared recipe, not a hidden constant


class ClientRecipe(Options):
    """The local training every client runs, as the protocol declares it to all parties.

    The server sends it with every round (one encoding: :mod:`fedls.protocol`); clients train
    with exactly these values and attackers model the client's training from it. The number of
    local steps a client actually made is not part of the recipe: it depends on the client's
    data size and is reported in each reply (:attr:`ClientUpdate.local_steps`).
    """

    optimizer: OptimizerName = Field("sgd", description="sgd (with momentum) or adam")
    momentum: float = Field(SGD_MOMENTUM, ge=0.0, lt=1.0, description="SGD momentum")
    lr: float = Field(0.05, gt=0.0, description="client learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="client weight decay")
    local_epochs: int = Field(2, ge=1, description="local epochs per round")
    batch_size: int = Field(16, ge=1, description="client mini-batch size")
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient-norm clipping; 0 = off")
    alpha: float = Field(0.0, le=1.0, description="label-smoothing factor in force this round")
    defense: str = Field("none", description="client-side defense name")


@dataclass(frozen=True)
class ProbeRequest:
    """A *malicious* server's request that changes what one client does this round.

    ``fedsgd``: also send the gradient of ``batch`` of your samples (Wang et al.'s (2024) FedSGD setting).
    ``fedavg``: train this round on exactly ``batch`` samples, so the update has a known truth.
    ``mixup``: Beta parameter of the probe's mixup coefficient, 0 = off.
    An honest-but-curious server sends none: the default threat mode changes nothing clients do.
    """

    mode: ProbeMode
    batch: int = 1
    mixup: float = 0.0


@dataclass(frozen=True)
class ClientUpdate:
    """One client's reply as the server receives it.

    ``weights``: the client's model after local training (FedAvg), parameter name → array.
    ``gradient``: present only under the malicious FedSGD-probe threat mode: the gradient of
    the client's training loss on a few of its samples, name → array.
    ``client_id``: the client's stable id (its partition); Flower's node ids are random per run.
    ``recipe``: the local training the client declares it ran (echoed in its reply).
    """

    node_id: int
    client_id: int
    num_examples: int
    local_steps: int
    recipe: ClientRecipe
    weights: dict[str, np.ndarray]
    metrics: dict[str, float]
    gradient: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class ServerView:
    """Everything an attack on client updates may use in one round."""

    server_round: int
    recipe: ClientRecipe
    global_weights: dict[str, np.ndarray]  # what the server sent this round
    updates: list[ClientUpdate]


@dataclass(frozen=True)
class GroundTruth:
    """What one client really trained on: for scorers only, never for attacks.

    ``label_counts``: how many samples of each class the client's local data held this round
    (the target of batch label recovery from FedAvg updates). ``images``/``targets``/``labels``:
    the samples behind a FedSGD/FedAvg probe, when the threat mode asked for one.
    """

    client_id: int
    label_counts: np.ndarray  # [C] integers
    alpha: float
    images: torch.Tensor | None = None  # [B, C, H, W] in [-1, 1], exactly what the model saw
    targets: torch.Tensor | None = None  # [B, num_classes] soft targets of the loss
    labels: torch.Tensor | None = None  # [B] hard labels (dominant class)
    extra: dict[str, float] = field(default_factory=dict)  # e.g. mixup coefficient
