"""The classifier contract every model in fedls meets.

Attacks and defenses need more than ``forward``: the penultimate features (model
inversion's δ_eval, embeddings, MID's bottleneck), the last linear layer ``head``
(analytic label recovery reads its gradient), and hidden representations (BiDO).
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``forward(x) = head(features(x))``; ``head`` is the last ``nn.Linear`` (bias optional)."""

    num_classes: int
    feature_dim: int
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation (the input of ``head``)."""
        return self.features_and_hidden(x)[0]

    def features_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Penultimate features and the outputs of the model's main hidden blocks (for BiDO)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def replace_head(self, head: nn.Module) -> None:
        """Swap the last layer (MID inserts its bottleneck here)."""
        self.head = head
