"""Image reconstruction from a gradient, Inverting-Gradients style, with the label fixed.

Wang et al. (2024, §4.3) feed their recovered soft label (and optionally the recovered
last-layer input x̂) into gradient-matching reconstruction. The loss is the sum
over parameter tensors of ``1 − cos(∇θ L(x', ŷ), ∇θ_true)`` plus ``tv_weight·TV(x')`` plus,
optionally, ``feature_weight·‖f(x') − x̂‖² / ‖x̂‖²``. Adam on the image, projected to the
pixel range [-1, 1] after every step; the iterate with the lowest loss is kept (the loss needs
no ground truth, so this selection is legitimate for the attacker).

The iDLG baseline is the same optimisation with the hard-label assumption: the label is the
one-hot vector of argmax ŷ (:func:`hard_label`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fedls.errors import ConfigError
from fedls.models.base import Classifier
from fedls.smoothing import soft_target_cross_entropy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructionResult:
    image: torch.Tensor  # [1, C, H, W] in [-1, 1]
    loss: float  # the attack loss of the kept iterate
    best_step: int
    steps: int


def hard_label(label: torch.Tensor) -> torch.Tensor:
    """iDLG's assumption: a one-hot label at the recovered top-1 class."""
    return F.one_hot(label.argmax(dim=-1), label.shape[-1]).to(label.dtype)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


def gradient_cosine_loss(candidate: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    """Σ over parameter tensors of 1 − cosine similarity (Inverting Gradients' per-layer form)."""
    total = candidate[0].new_zeros(())
    for g, t in zip(candidate, target, strict=True):
        total = total + 1 - F.cosine_similarity(g.flatten(), t.flatten(), dim=0, eps=1e-12)
    return total


def reconstruct_image(
    model: Classifier,
    gradient: dict[str, torch.Tensor],
    label: torch.Tensor,
    image_shape: tuple[int, int, int],
    steps: int = 100,
    lr: float = 0.1,
    tv_weight: float = 1e-2,
    features: torch.Tensor | None = None,
    feature_weight: float = 0.0,
    seed: int = 0,
) -> ReconstructionResult:
    """Find one image whose gradient under ``label`` matches ``gradient`` (name → tensor).

    ``label``: the soft label to fix ([C]); pass :func:`hard_label` of it for the iDLG baseline.
    ``features``: recovered head input x̂, used only when ``feature_weight > 0``.
    """
    if steps < 1:
        raise ConfigError(f"reconstruction needs at least 1 step (got {steps}); use 0 to switch it off upstream")
    if tv_weight < 0 or feature_weight < 0 or not lr > 0:
        raise ConfigError("tv and feature weights must be >= 0 and the learning rate > 0")
    params = [(n, p) for n, p in model.named_parameters() if n in gradient]
    if not params:
        raise ConfigError("the gradient shares no parameter names with the model")
    device = params[0][1].device
    target = [gradient[n].detach().to(device=device, dtype=torch.float32) for n, _ in params]
    tensors = [p for _, p in params]
    label = label.detach().to(device=device, dtype=torch.float32).reshape(1, -1)
    use_features = features is not None and feature_weight > 0
    if use_features:
        assert features is not None  # for the type checker: use_features implies it
        feat_target = features.detach().to(device=device, dtype=torch.float32).reshape(1, -1)
        feat_norm = feat_target.pow(2).sum().clamp_min(1e-12)

    def loss_of(image: torch.Tensor) -> torch.Tensor:
        feats = model.features(image)
        loss_ce = soft_target_cross_entropy(model.head(feats), label)
        candidate = torch.autograd.grad(loss_ce, tensors, create_graph=True)
        loss = gradient_cosine_loss(list(candidate), target) + tv_weight * total_variation(image)
        if use_features:
            loss = loss + feature_weight * (feats - feat_target).pow(2).sum() / feat_norm
        return loss

    milestones = [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    result = optimise_image(initial_image(image_shape, seed).to(device), loss_of, steps, lr, milestones)
    model.zero_grad(set_to_none=True)
    log.debug("reconstruction: best loss %.4g at step %d of %d", result.loss, result.best_step, steps)
    return result


def initial_image(image_shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """The seeded random start of a reconstruction, in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn((1, *image_shape), generator=generator) * 0.5).clamp(-1, 1)


def optimise_image(
    image: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor], steps: int, lr: float, milestones: Sequence[int] = ()
) -> ReconstructionResult:
    """Adam on the pixels of ``image`` (kept in [-1, 1]), returning the best iterate: the
    matching loss is not monotone, and the last step is often not the best one.
    ``milestones``: steps at which the step size drops tenfold (Geiping et al. 2020)."""
    image = image.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)
    best_loss, best_step, best_image = math.inf, 0, image.detach().clone()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(image)
        value = float(loss.detach())
        if math.isfinite(value) and value < best_loss:
            best_loss, best_step, best_image = value, step, image.detach().clone()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            image.clamp_(-1, 1)
    return ReconstructionResult(best_image.cpu(), best_loss, best_step, steps)
