"""The FedSGD probe: a client's gradient on a few of its own samples.

In the FedSGD setting of Wang et al. (2024) the server receives the gradient of the client's real
training loss; with one sample it is the setting where analytic label recovery is exact.
Wang et al. (2024) studies two label augmentations: label smoothing (always applied with the round's
α) and mixup (optional here): each probe sample is ``μ·x₁ + (1−μ)·x₂`` for two samples of
different classes with ``μ ~ Beta(a, a)``, and its target ``μ·onehot₁ + (1−μ)·onehot₂``,
smoothed with α on top (``(1−α)·mix + α/C``; α = 0 gives plain mixup).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedls.data.base import ImageDataset
from fedls.errors import ConfigError
from fedls.models.base import Classifier
from fedls.smoothing import smoothed_targets, soft_target_cross_entropy

# How many random partners to try for a sample before concluding the shard has one class.
_PARTNER_TRIES = 64


@dataclass
class ProbeResult:
    gradient: dict[str, np.ndarray]  # parameter name → gradient (what the server receives)
    images: torch.Tensor  # ground truth, for metrics only
    targets: torch.Tensor
    labels: torch.Tensor
    extra: dict[str, float]


def _mixup_batch(
    dataset: ImageDataset, picks: list[int], num_classes: int, alpha: float, beta_a: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    images, targets, labels, coefficients = [], [], [], []
    for first in picks:
        x1, y1 = dataset[first][0], int(dataset[first][1])
        partner = None
        for _ in range(_PARTNER_TRIES):
            j = int(rng.integers(len(dataset)))
            if int(dataset[j][1]) != y1:
                partner = j
                break
        if partner is None:
            raise ConfigError(
                "mixup needs a client shard with at least two classes; lower the partition skew or switch mixup off"
            )
        x2, y2 = dataset[partner][0], int(dataset[partner][1])
        mu = float(rng.beta(beta_a, beta_a))
        pair = torch.tensor([y1, y2])
        mixed = mu * smoothed_targets(pair[:1], num_classes, alpha) + (1 - mu) * smoothed_targets(pair[1:], num_classes, alpha)
        images.append(mu * x1 + (1 - mu) * x2)
        targets.append(mixed[0])
        labels.append(y1 if mu >= 0.5 else y2)
        coefficients.append(mu)
    return torch.stack(images), torch.stack(targets), torch.tensor(labels), coefficients


def probe_gradient(
    model: Classifier,
    dataset: ImageDataset,
    alpha: float,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    mixup_beta: float | None = None,
) -> ProbeResult:
    """Gradient of the label-smoothing loss (Struppek et al. 2024, Eq. 3, α of this round) on ``batch_size``
    random samples of ``dataset``, taken at the weights the server sent.

    ``mixup_beta``: Beta parameter ``a`` of the mixup coefficient; ``None`` or 0 switches
    mixup off. The ground truth's ``extra`` carries ``alpha``, and with mixup ``mixup`` = 1 and
    ``mixup_coefficient`` = the weight of the dominant class of the first sample (≥ 0.5).
    """
    if batch_size < 1:
        raise ConfigError(f"probe batch size must be >= 1 (got {batch_size})")
    picks = torch.randperm(len(dataset), generator=generator)[:batch_size].tolist()
    extra: dict[str, float] = {"alpha": float(alpha)}
    if mixup_beta:
        if not mixup_beta > 0:
            raise ConfigError(f"mixup Beta parameter must be > 0 (got {mixup_beta}); use 0 to switch mixup off")
        images, targets, labels, coefficients = _mixup_batch(dataset, picks, model.num_classes, alpha, mixup_beta, generator)
        extra.update(
            {"mixup": 1.0, "mixup_beta": float(mixup_beta), "mixup_coefficient": max(coefficients[0], 1 - coefficients[0])}
        )
    else:
        images = torch.stack([dataset[i][0] for i in picks])
        labels = torch.tensor([int(dataset[i][1]) for i in picks])
        targets = smoothed_targets(labels, model.num_classes, alpha)
    model.to(device).zero_grad(set_to_none=True)
    loss = soft_target_cross_entropy(model(images.to(device)), targets.to(device))
    loss.backward()
    gradient = {name: p.grad.detach().cpu().numpy().copy() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return ProbeResult(gradient, images, targets, labels, extra)
