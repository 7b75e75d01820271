"""Training recipes (defenses) as hooks around one local-training loop.

Learned from the MIA ToolBox's trainer: a defense does not own the loop, it changes the
model (MID's bottleneck, DP's GroupNorm), the loss (MID's KL, BiDO's HSIC terms) or the
optimisation (Opacus) through the hooks below. Label smoothing with the α in force is the
base objective every defense adds to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from fedls.errors import ConfigError
from fedls.models.base import Classifier

BaseLoss = Callable[[torch.Tensor], torch.Tensor]
"""The smoothing loss for the current batch, as a function of the logits."""


@dataclass
class TrainingContext:
    """What a defense may need inside one client's local training of one round.

    ``state`` persists across rounds for this client (e.g. the DP accountant's history);
    it must hold only plain Python values so that it survives Flower's context records.
    """

    server_round: int
    client_id: int
    num_samples: int
    batch_size: int
    local_epochs: int
    lr: float
    device: torch.device
    total_rounds: int | None = None  # planned rounds of the run (DP budgets its noise over them)
    state: dict[str, Any] = field(default_factory=dict)


def as_classifier(model: nn.Module, defense: str) -> Classifier:
    """``model`` as the fedls :class:`Classifier`, for a defense whose loss reaches into its
    parts (features, head); such a defense keeps the default :meth:`Defense.wrap_training`,
    so its loss always receives the classifier itself."""
    if not isinstance(model, Classifier):
        raise ConfigError(f"defense {defense!r} needs a fedls classifier in its loss (got {type(model).__name__})")
    return model


class Defense:
    """No defense: the model trains on the smoothing loss alone. Subclasses override hooks."""

    name = "none"

    def prepare_model(self, model: Classifier) -> Classifier:
        """Change the architecture before training and evaluation (called once per model)."""
        return model

    def loss(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, base_loss: BaseLoss
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch and any per-batch diagnostics to average.

        ``model`` is what :meth:`wrap_training` returned: the classifier itself, or a wrapper
        around it (Opacus' ``GradSampleModule``) for a defense that wraps training."""
        return base_loss(model(images)), {}

    def wrap_training(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: DataLoader,
        ctx: TrainingContext,
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        """Replace the model/optimizer/loader for private training (Opacus)."""
        return model, optimizer, loader

    def finish_training(self, model: nn.Module, ctx: TrainingContext) -> dict[str, float]:
        """Called after local training; returns metrics to report (e.g. ε) and may update ``ctx.state``."""
        return {}

    def unwrap_model(self, model: nn.Module) -> nn.Module:
        """The plain model whose weights are sent to the server."""
        return model
