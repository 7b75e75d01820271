"""MID: mutual-information regularisation through a variational information bottleneck.

Wang et al., "Improving Robustness to Model Inversion Attacks via Mutual Information
Regularization" (AAAI 2021); used as a baseline in Struppek et al. (2024) (Table 1, Appx. B.5, C.2), where
the bottleneck sits between the average pooling and the last linear layer (k = 1024 on
ResNet-152) and β ∈ {0.001, 0.003, 0.01}.

The head becomes ``encoder → (μ, s) → z → linear``: ``σ = softplus(s − 5)`` (the −5 starts
the noise small), ``z = μ + σ·ε`` with ``ε ~ N(0, I)``, and the loss adds
``β·KL(N(μ, σ²) ‖ N(0, I))`` (in nats, summed over the k dimensions, averaged over the batch).

Deployment decision: noise is sampled only in training mode. In evaluation mode the head uses
the mean ``z = μ``, so the deployed model is deterministic; that is the model the server
evaluates and that model-inversion attacks query. (The upstream code also samples at test
time, which makes the classifier stochastic; averaging over samples approaches the mean.)
The final ``nn.Linear`` stays reachable as ``head.linear``: gradient attacks that read the
last layer's gradient must look there.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedls.defenses import DEFENSES
from fedls.defenses.base import BaseLoss, Defense, as_classifier
from fedls.errors import ConfigError
from fedls.models.base import Classifier
from fedls.schema import Options

SOFTPLUS_SHIFT = 5.0


def gaussian_kl(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``KL(N(μ, diag σ²) ‖ N(0, I))`` in nats (summed over dimensions)."""
    kl = 0.5 * (mu.pow(2) + std.pow(2) - 2.0 * torch.log(std) - 1.0)
    return kl.sum(dim=-1).mean()


class VIBHead(nn.Module):
    """Variational bottleneck of size ``k`` followed by the classifier's last linear layer."""

    def __init__(self, in_features: int, bottleneck: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        self.encoder = nn.Linear(in_features, 2 * bottleneck)
        self.linear = nn.Linear(bottleneck, num_classes, bias=bias)

    def encode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.encoder(features)
        mu, s = stats[:, : self.bottleneck], stats[:, self.bottleneck :]
        return mu, F.softplus(s - SOFTPLUS_SHIFT)

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, μ, σ)``: z is sampled in training mode and is the mean in evaluation mode."""
        mu, std = self.encode(features)
        z = mu + std * torch.randn_like(std) if self.training else mu
        return z, mu, std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.sample(features)[0])


class MIDDefense(Defense):
    name = "mid"

    def __init__(self, beta: float, bottleneck: int | None) -> None:
        self.beta = beta
        self.bottleneck = bottleneck

    def prepare_model(self, model: Classifier) -> Classifier:
        if isinstance(model.head, VIBHead):
            return model
        old = model.head
        if not isinstance(old, nn.Linear):
            raise ConfigError(
                f"defense 'mid' needs a model whose last layer is nn.Linear (got {type(old).__name__}); pick another --model"
            )
        # default k: half the penultimate width (Struppek et al. 2024, uses k = 1024 on ResNet-152's 2048)
        k = self.bottleneck or max(1, old.in_features // 2)
        model.replace_head(VIBHead(old.in_features, k, old.out_features, bias=old.bias is not None))
        return model

    def loss(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, base_loss: BaseLoss
    ) -> tuple[torch.Tensor, dict[str, float]]:
        model = as_classifier(model, "mid")
        head = model.head
        if not isinstance(head, VIBHead):
            raise ConfigError("defense 'mid' got a model without its bottleneck head; build it with prepare_model")
        z, mu, std = head.sample(model.features(images))
        kl = gaussian_kl(mu, std)
        ce = base_loss(head.linear(z))
        return ce + self.beta * kl, {"mid_kl": float(kl.detach()), "mid_ce": float(ce.detach())}


class MIDOptions(Options):
    """``[defense_options]`` of ``mid`` (Wang et al. 2021, Appx. B.5 of Struppek et al. 2024)."""

    beta: float = Field(0.003, ge=0.0, le=10.0, description="weight of the KL term (0.003–0.01 in the papers)")
    bottleneck: int | None = Field(None, ge=1, description="bottleneck width; default: the head's input width")


@DEFENSES.register("mid")
def build_mid(options: dict[str, Any]) -> Defense:
    parsed = MIDOptions.parse(options, "defense_options (mid)")
    return MIDDefense(parsed.beta, parsed.bottleneck)
