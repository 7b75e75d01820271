"""Image reconstruction from a FedAvg weight update by unrolling the client's local steps.

Inverting Gradients (Geiping et al., 2020, §5 "multiple local steps"): instead of matching one
gradient, the attacker simulates the client's local training from the weights it sent — the
declared optimizer (SGD with momentum, fedls' client recipe), learning rate, number of steps
and gradient-norm clipping — on a candidate image with the recovered label, and matches the
simulated update ``θ_E − θ_0`` to the observed one (1 − cosine per parameter tensor + TV).
Every simulated step stays differentiable, so the candidate image is optimised through the
whole local training.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch
from torch.func import functional_call

from fedls.attacks.gradient.reconstruction import (
    ReconstructionResult,
    gradient_cosine_loss,
    initial_image,
    optimise_image,
    total_variation,
)
from fedls.errors import ConfigError
from fedls.models.base import Classifier
from fedls.smoothing import soft_target_cross_entropy


@dataclass(frozen=True)
class LocalRecipe:
    """The client's declared local training: what the server knows from the protocol."""

    steps: int
    lr: float
    momentum: float = 0.9
    max_grad_norm: float = 0.0  # 0: no clipping

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.lr > 0 or not 0 <= self.momentum < 1 or self.max_grad_norm < 0:
            raise ConfigError(f"invalid local recipe {self}; steps >= 1, lr > 0, momentum in [0, 1), clip >= 0")


def simulate_update(
    model: Classifier, start: dict[str, torch.Tensor], image: torch.Tensor, label: torch.Tensor, recipe: LocalRecipe
) -> dict[str, torch.Tensor]:
    """``θ_E − θ_0`` after ``recipe.steps`` SGD(momentum) steps on ``(image, label)``, differentiable
    in ``image``. ``start`` holds the trainable parameters ``θ_0`` (no gradient needed)."""
    # θ_0 must be part of the graph: the step gradients are taken with respect to it
    params = {name: tensor.detach().clone().requires_grad_(True) for name, tensor in start.items()}
    buffers = {name: b for name, b in model.named_buffers()}
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    for _ in range(recipe.steps):
        logits = functional_call(model, {**params, **buffers}, (image,))
        loss = soft_target_cross_entropy(logits, label)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        if recipe.max_grad_norm > 0:
            norm = torch.sqrt(functools.reduce(operator.add, (g.pow(2).sum() for g in grads)))
            scale = torch.clamp(recipe.max_grad_norm / (norm + 1e-6), max=1.0)
            grads = tuple(g * scale for g in grads)
        for (name, p), g in zip(list(params.items()), grads, strict=True):
            velocity[name] = recipe.momentum * velocity[name] + g
            params[name] = p - recipe.lr * velocity[name]
    return {name: params[name] - start[name].detach() for name in params}


def reconstruct_from_update(
    model: Classifier,
    start: dict[str, torch.Tensor],
    observed_delta: dict[str, torch.Tensor],
    label: torch.Tensor,
    image_shape: tuple[int, int, int],
    recipe: LocalRecipe,
    steps: int = 100,
    lr: float = 0.1,
    tv_weight: float = 1e-2,
    seed: int = 0,
) -> ReconstructionResult:
    """One image whose simulated local update under ``label`` matches ``observed_delta``."""
    if steps < 1:
        raise ConfigError(f"reconstruction needs at least 1 step (got {steps})")
    names = [n for n, _ in model.named_parameters() if n in observed_delta and n in start]
    if not names:
        raise ConfigError("the update shares no parameter names with the model")
    theta0 = {n: start[n].detach().float() for n in names}
    target = [observed_delta[n].detach().float() for n in names]
    label = label.detach().float().reshape(1, -1)
    def loss_of(image: torch.Tensor) -> torch.Tensor:
        delta = simulate_update(model, theta0, image, label, recipe)
        return gradient_cosine_loss([delta[n] for n in names], target) + tv_weight * total_variation(image)

    return optimise_image(initial_image(image_shape, seed), loss_of, steps, lr)
