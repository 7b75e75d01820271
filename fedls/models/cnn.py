"""A small CNN for 8–32 px inputs, the default target model on CPU."""

from __future__ import annotations

import torch
from torch import nn

from fedls.models.base import Classifier


def norm_layer(kind: str, channels: int) -> nn.Module:
    """GroupNorm by default: it has no batch statistics, so it behaves the same under FedAvg with
    non-IID shards, single-sample gradients (the FedSGD probe) and Opacus (which rejects BatchNorm)."""
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class SmallCNN(Classifier):
    """Three conv blocks (conv–norm–ReLU, pooling after the first two), global average pooling,
    a hidden linear layer, then ``head``. Works for any input size ≥ 4 px."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        feature_dim: int = 128,
        norm: str = "group",
        head_bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim

        def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), norm_layer(norm, cout), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return nn.Sequential(*layers)

        self.blocks = nn.ModuleList(
            [block(in_channels, width, True), block(width, 2 * width, True), block(2 * width, 4 * width, False)]
        )
        self.neck = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes, bias=head_bias)

    def features_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = []
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        return self.neck(x), hidden


class SmallMLP(Classifier):
    """Two hidden layers on flattened pixels: a different architecture for the evaluation model
    and surrogates on tiny inputs."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, feature_dim: int = 128) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.layer1 = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h1 = self.layer1(x)
        h2 = self.layer2(h1)
        return h2, [h1]
