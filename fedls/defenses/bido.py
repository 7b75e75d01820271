"""BiDO-HSIC: bilateral dependency optimisation with the Hilbert–Schmidt independence criterion.

Peng et al., "Bilateral Dependency Optimization: Defending Against Model-inversion Attacks"
(KDD 2022); a baseline in Struppek et al. (2024) (Table 1, Appx. B.5: the outputs of ResNet-152's four
stages, HSIC, λ = (0.05, 0.5)). The loss over the hidden blocks ``Z_j`` is

    base + Σ_j [ λx · nHSIC(Z_j, X) − λy · nHSIC(Z_j, Y) ]

so each block keeps little information about the input image X while staying predictive of
the label Y. Kernels: Gaussian for X and Z with bandwidth ``σ² · dim`` (scaled by the
flattened dimension, as upstream, so one σ fits layers of very different width), linear on
one-hot labels for Y.

Normalisation choice: nHSIC here is ``HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` with the
biased HSIC estimator (centred-kernel alignment): bounded in [0, 1], 1 for a variable with
itself, near 0 for independent variables (its positive bias shrinks with the batch size and
grows with the dimension at narrow bandwidths). Upstream uses a regularised CCA-style
normalisation with two matrix inverses per pair. The bounded form matters for training: with
the *unbiased* estimator (not bounded) gradient ascent on −λy·nHSIC(Z, Y) drove a small CNN on
digits to chance accuracy, while this form trains to the undefended accuracy. Batches under 4
samples train on the base loss only. Everything runs on the batch's device.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt
from torch import nn

from fedls.defenses import DEFENSES
from fedls.defenses.base import BaseLoss, Defense, as_classifier
from fedls.errors import ConfigError
from fedls.schema import Options

EPS = 1e-12
MIN_BATCH = 4


def gaussian_kernel(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(−‖a − b‖² / (2 σ² d))`` on the rows of ``x`` flattened to ``d`` features."""
    flat = x.reshape(x.shape[0], -1).float()
    sq = flat.pow(2).sum(dim=1, keepdim=True)
    dist = (sq + sq.T - 2.0 * flat @ flat.T).clamp_min(0.0)
    return torch.exp(-dist / (2.0 * sigma * sigma * flat.shape[1]))


def linear_kernel(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1).float()
    return flat @ flat.T


def _centre(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` with the centring matrix ``H = I − 11ᵀ/m``."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased empirical HSIC ``tr(K H L H)`` (up to the constant 1/(m−1)², which cancels below)."""
    return (_centre(k) * _centre(l)).sum()


def normalized_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """``HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` ∈ [0, 1] (Cauchy–Schwarz for PSD kernels):
    1 for a variable with itself, near 0 for independent ones as the batch grows."""
    return hsic(k, l) / torch.sqrt((hsic(k, k) * hsic(l, l)).clamp_min(EPS))


class BiDODefense(Defense):
    name = "bido"

    def __init__(self, lambda_x: float, lambda_y: float, sigma: float, layers: list[int] | None) -> None:
        self.lambda_x = lambda_x
        self.lambda_y = lambda_y
        self.sigma = sigma
        self.layers = layers

    def _chosen(self, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.layers is None:
            return hidden  # every main block the model exposes (ResNet: its four stages)
        if any(i >= len(hidden) or i < -len(hidden) for i in self.layers):
            raise ConfigError(f"defense 'bido': layers {self.layers} out of range; this model has {len(hidden)} hidden blocks")
        return [hidden[i] for i in self.layers]

    def loss(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, base_loss: BaseLoss
    ) -> tuple[torch.Tensor, dict[str, float]]:
        model = as_classifier(model, "bido")
        features, hidden = model.features_and_hidden(images)
        logits = model.head(features)
        loss = base_loss(logits)
        if images.shape[0] < MIN_BATCH:  # kernels of 1–3 samples carry no usable dependence signal
            return loss, {}
        k_x = gaussian_kernel(images, self.sigma)
        k_y = linear_kernel(F.one_hot(labels, logits.shape[-1]))
        hx = hy = torch.zeros((), device=images.device)
        for z in self._chosen(hidden):
            k_z = gaussian_kernel(z, self.sigma)
            hx = hx + normalized_hsic(k_z, k_x)
            hy = hy + normalized_hsic(k_z, k_y)
        total = loss + self.lambda_x * hx - self.lambda_y * hy
        return total, {"bido_hsic_x": float(hx.detach()), "bido_hsic_y": float(hy.detach())}


class BiDOOptions(Options):
    """``[defense_options]`` of ``bido`` (BiDO-HSIC, Peng et al. 2022)."""

    lambda_x: float = Field(0.05, ge=0.0, le=100.0, description="weight of nHSIC(Z, X), the input-dependence penalty")
    lambda_y: float = Field(0.5, ge=0.0, le=100.0, description="weight of nHSIC(Z, Y), the label-dependence reward")
    sigma: float = Field(5.0, gt=0.0, le=1e6, description="Gaussian kernel width, scaled by sqrt(dimension)")
    layers: list[StrictInt] | None = Field(
        None, min_length=1, description="hidden blocks to regularise, e.g. [0, 1, 2]; default all"
    )


@DEFENSES.register("bido")
def build_bido(options: dict[str, Any]) -> Defense:
    parsed = BiDOOptions.parse(options, "defense_options (bido)")
    return BiDODefense(parsed.lambda_x, parsed.lambda_y, parsed.sigma, list(parsed.layers) if parsed.layers else None)
