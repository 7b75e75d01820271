"""One client's local training: the loop every defense hooks into."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.optim.optimizer import ParamsT
from torch.utils.data import DataLoader

from fedls.data.base import ImageDataset
from fedls.defenses.base import Defense, TrainingContext
from fedls.models.base import Classifier
from fedls.smoothing import label_smoothing_loss, soft_target_cross_entropy
from fedls.threat_model import SGD_MOMENTUM


@dataclass
class LocalTrainingResult:
    loss: float
    steps: int
    num_samples: int
    diagnostics: dict[str, float] = field(default_factory=dict)


def _base_loss(labels: torch.Tensor, alpha: float):  # noqa: ANN202 - a BaseLoss
    """Label smoothing for class indices; soft-target CE for ready-made soft targets (mixup probes)."""
    if labels.is_floating_point():
        return lambda logits: soft_target_cross_entropy(logits, labels)
    return lambda logits: label_smoothing_loss(logits, labels, alpha)





def make_optimizer(name: str, params: ParamsT, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def train_local(
    model: Classifier,
    dataset: ImageDataset,
    alpha: float,
    ctx: TrainingContext,
    defense: Defense,
    generator: torch.Generator,
    optimizer_name: str = "sgd",
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
) -> LocalTrainingResult:
    """Train ``model`` in place for ``ctx.local_epochs`` epochs on ``dataset``.

    The objective is the label-smoothing loss with the round's α (Struppek et al. 2024, Eq. 3) plus
    whatever the defense adds. A fresh optimizer each round (plain FedAvg clients keep no
    optimizer state between rounds).
    """
    model.to(ctx.device).train()
    loader = DataLoader(dataset, batch_size=ctx.batch_size, shuffle=True, generator=generator, drop_last=False)
    optimizer = make_optimizer(optimizer_name, model.parameters(), ctx.lr, weight_decay)
    trained, optimizer, loader = defense.wrap_training(model, optimizer, loader, ctx)
    total, steps, seen = 0.0, 0, 0
    sums: dict[str, float] = {}
    for _ in range(ctx.local_epochs):
        for images, labels in loader:
            if len(labels) == 0:  # Opacus' Poisson sampling can draw an empty batch
                continue
            images, labels = images.to(ctx.device), labels.to(ctx.device)
            optimizer.zero_grad(set_to_none=True)
            loss, extras = defense.loss(trained, images, labels, _base_loss(labels, alpha))
            loss.backward()
            if max_grad_norm:  # None or 0: off
                # Negative α's loss is unbounded below: once logits are large, single steps can be
                # huge and one client's divergence wrecks the FedAvg average. (Under DP, Opacus
                # clips per sample from grad_sample and this clip of .grad has no effect.)
                torch.nn.utils.clip_grad_norm_(trained.parameters(), max_grad_norm)
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} in round {ctx.server_round}; lower --lr")
            total += value * len(labels)
            seen += len(labels)
            steps += 1
            for key, v in extras.items():
                sums[key] = sums.get(key, 0.0) + v
    diagnostics = {key: v / max(steps, 1) for key, v in sums.items()}
    diagnostics.update(defense.finish_training(trained, ctx))
    return LocalTrainingResult(loss=total / max(seen, 1), steps=steps, num_samples=len(dataset), diagnostics=diagnostics)
