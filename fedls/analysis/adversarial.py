"""L∞ adversarial attacks written for fedls: FGSM, PGD with restarts, margin-loss (CW-style) PGD.

No adversarial-attack library is installed, so these are implemented here from their
definitions (Goodfellow et al. 2015; Madry et al. 2018; Fu et al. (2020) Eq. 10 for the margin loss).
Images live in [-1, 1]; ε and step sizes are in that range (twice the [0, 1] values).
Every iterate is projected onto the ε-ball around the input *and* the valid pixel range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from fedls.errors import ConfigError

LossName = Literal["ce", "margin"]
PIXEL_MIN, PIXEL_MAX = -1.0, 1.0


@dataclass(frozen=True)
class AttackSpec:
    """One white-box attack: ``steps`` signed-gradient steps of ``step_fraction``·ε.

    FGSM is ``steps=1, step_fraction=1, random_start=False``. ``restarts`` > 1 repeats
    the attack from new random starts and keeps, per sample, a successful result if any
    (else the one with the highest loss).
    """

    name: str
    steps: int
    step_fraction: float
    restarts: int = 1
    loss: LossName = "ce"
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1:
            raise ConfigError(f"attack {self.name}: steps and restarts must be >= 1")
        if not self.step_fraction > 0:
            raise ConfigError(f"attack {self.name}: step size must be > 0")
        if self.loss not in ("ce", "margin"):
            raise ConfigError(f"attack {self.name}: loss must be 'ce' or 'margin' (got {self.loss!r})")


def attack_objective(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None, loss: LossName) -> torch.Tensor:
    """Per-sample objective the attacker *maximises*.

    Untargeted: CE(z, y) or the margin ``max_{i≠y} z_i − z_y``. Targeted (``targets`` given):
    −CE(z, t) or ``z_t − max_{i≠t} z_i``. The margin works on raw logits, so it keeps a
    useful gradient where the softmax saturates (Fu et al. 2020, §3.1).
    """
    if loss == "ce":
        return (
            -F.cross_entropy(logits, targets, reduction="none")
            if targets is not None
            else F.cross_entropy(logits, labels, reduction="none")
        )
    ref = targets if targets is not None else labels
    z_ref = logits.gather(1, ref[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(ref, logits.shape[1]).bool(), float("-inf")).amax(1)
    return z_ref - others if targets is not None else others - z_ref


def is_success(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == targets if targets is not None else pred != labels


def project(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L∞ ball of radius ``eps`` around ``x0`` intersected with the pixel range."""
    return torch.max(torch.min(x, x0 + eps), x0 - eps).clamp(PIXEL_MIN, PIXEL_MAX)


def _single_run(
    model: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
    eps: float, spec: AttackSpec, generator: torch.Generator,
) -> torch.Tensor:
    x = x0.clone()
    if spec.random_start:
        noise = (torch.rand(x0.shape, generator=generator) * 2 - 1) * eps
        x = project(x0 + noise.to(x0.device), x0, eps)
    step = spec.step_fraction * eps
    for _ in range(spec.steps):
        x.requires_grad_(True)
        objective = attack_objective(model(x), labels, targets, spec.loss).sum()
        (grad,) = torch.autograd.grad(objective, x)
        x = project(x.detach() + step * grad.sign(), x0, eps)
    return x.detach()


def run_attack(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, spec: AttackSpec,
    targets: torch.Tensor | None = None, seed: int = 0,
) -> torch.Tensor:
    """Adversarial versions of ``images`` against ``model`` (kept in eval mode)."""
    if eps < 0:
        raise ConfigError(f"epsilon must be >= 0 (got {eps})")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    kept: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (best x, its success, its objective)
    for _ in range(spec.restarts):
        x = _single_run(model, images, labels, targets, eps, spec, generator)
        with torch.no_grad():
            logits = model(x)
            success = is_success(logits, labels, targets)
            obj = attack_objective(logits, labels, targets, spec.loss)
        if kept is None:
            kept = (x, success, obj)
            continue
        best, best_success, best_obj = kept
        better = (success & ~best_success) | (~best_success & ~success & (obj > best_obj))
        kept = (
            torch.where(better.view(-1, *[1] * (x.dim() - 1)), x, best),
            best_success | success,
            torch.where(better, obj, best_obj),
        )
    # AttackSpec guarantees restarts >= 1, so the loop ran and kept a result.
    assert kept is not None
    return kept[0]
