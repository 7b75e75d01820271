"""Identity losses of the optimisation stage (Struppek et al. 2024, Appx. B.4, Eq. 16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-7


def poincare_loss(logits: torch.Tensor, targets: torch.Tensor, target_value: float = 0.9999) -> torch.Tensor:
    """Per-sample Poincaré distance ``arccosh(1 + 2‖u−v‖²/((1−‖u‖²)(1−‖v‖²)))`` (Eq. 16).

    ``u = logits/‖logits‖₁`` lies in the unit ball; ``v`` is the one-hot target with the
    target entry at ``target_value`` (< 1, so ``v`` is inside the ball too). Unlike
    cross-entropy its gradient does not vanish as the target confidence saturates.
    """
    u = logits / logits.abs().sum(dim=-1, keepdim=True).clamp_min(_EPS)
    v = F.one_hot(targets, logits.shape[-1]).to(logits.dtype) * target_value
    diff = (u - v).pow(2).sum(-1)
    denom = ((1 - u.pow(2).sum(-1)) * (1 - v.pow(2).sum(-1))).clamp_min(_EPS)
    return torch.acosh(1 + 2 * diff / denom)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy: the identity loss of GMI (Zhang et al., 2020)."""
    return F.cross_entropy(logits, targets, reduction="none")


def gmi_loss(
    logits: torch.Tensor, targets: torch.Tensor, discriminator_logits: torch.Tensor, prior_weight: float
) -> torch.Tensor:
    """GMI: identity CE plus the discriminator's realism prior ``−log D(G(z))`` (non-saturating)."""
    return cross_entropy_loss(logits, targets) + prior_weight * F.softplus(-discriminator_logits)


def normalised_margin(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``(z_t − max_{j≠t} z_j) / ‖z − mean(z)‖₂``: the target's logit margin measured
    in units of the logits' own spread, so it is unchanged when all logits are scaled by a
    positive factor (and shifted by a constant). Lies in [−√2, √2]."""
    target_logit = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf"))
    centred = logits - logits.mean(dim=-1, keepdim=True)
    return (target_logit - others.max(dim=-1).values) / centred.norm(dim=-1).clamp_min(_EPS)


def logit_margin_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Adaptive identity loss against negative label smoothing (not in Struppek et al. 2024).

    Negative smoothing inflates the logits (its loss is unbounded below), so softmax-based
    losses and scores saturate: cross-entropy's gradient vanishes and every candidate looks
    100 % confident. The normalised margin (:func:`normalised_margin`) is scale-invariant, so an
    attacker who knows the target was trained with α < 0 loses nothing to the inflation; the
    loss is its negation (minimised = margin maximised)."""
    return -normalised_margin(logits, targets)
