"""The FedSGD probe: a client's gradient on a few of its own samples.

In the FedSGD setting of seed 003 the server receives the gradient of the client's real
training loss; with one sample it is the setting where analytic label recovery is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from fedls.models.base import Classifier
from fedls.smoothing import smoothed_targets, soft_target_cross_entropy


@dataclass
class ProbeResult:
    gradient: dict[str, np.ndarray]  # parameter name → gradient (what the server receives)
    images: torch.Tensor  # ground truth, for metrics only
    targets: torch.Tensor
    labels: torch.Tensor
    extra: dict[str, float]


def probe_gradient(
    model: Classifier,
    dataset: Dataset,
    alpha: float,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
) -> ProbeResult:
    """Gradient of the label-smoothing loss (seed 001 Eq. 3, α of this round) on ``batch_size``
    random samples of ``dataset``, taken at the weights the server sent."""
    picks = torch.randperm(len(dataset), generator=generator)[:batch_size].tolist()
    images = torch.stack([dataset[i][0] for i in picks])
    labels = torch.tensor([int(dataset[i][1]) for i in picks])
    targets = smoothed_targets(labels, model.num_classes, alpha)
    model.to(device).zero_grad(set_to_none=True)
    loss = soft_target_cross_entropy(model(images.to(device)), targets.to(device))
    loss.backward()
    gradient = {name: p.grad.detach().cpu().numpy().copy() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return ProbeResult(gradient, images, targets, labels, {"alpha": alpha})
