"""Label smoothing with positive and negative factors, and the negative-α warm-up.

Struppek et al. (ICLR 2024), Eq. 2–3 and Appx. A: targets
``y_ls = (1 - α)·onehot + α/C`` and loss ``-Σ_k y_ls,k · log p_k`` with α ∈ (-∞, 1].
Negative α penalises confidence in the wrong classes; its loss is unbounded below, which is
why §4.1 trains the first epochs without smoothing and then ramps α in (the warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fedls.errors import ConfigError


def smoothed_targets(labels: torch.Tensor, num_classes: int, alpha: float) -> torch.Tensor:
    """Return ``(1-α)·onehot(labels) + α/C`` (Struppek et al. 2024, Eq. 2); rows always sum to 1."""
    onehot = F.one_hot(labels, num_classes).to(torch.get_default_dtype())
    return (1.0 - alpha) * onehot + alpha / num_classes


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-Σ_k t_k log softmax(z)_k`` for arbitrary (even negative) targets."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def label_smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Struppek et al. (2024), Eq. 3. The explicit form is used for every α so that α < 0 is handled too.

    Its gradient with respect to the logits is ``(p - y_ls)/B`` (Appx. A, Eq. 10–13).
    """
    targets = smoothed_targets(labels, logits.shape[-1], alpha).to(logits.dtype)
    return soft_target_cross_entropy(logits, targets)


def validate_alpha(alpha: float) -> float:
    if not alpha <= 1.0:
        raise ConfigError(f"smoothing factor alpha={alpha} is out of range; use a value <= 1 (e.g. 0.1 or -0.05)")
    return float(alpha)


@dataclass(frozen=True)
class SmoothingSchedule:
    """The α in force at each federated round.

    Positive (and zero) α holds from the first round. Negative α follows Struppek et al. (2024) §4.1's
    warm-up, expressed over global rounds: ``warmup_rounds`` rounds with α = 0, then a linear
    ramp over ``ramp_rounds`` rounds that reaches ``alpha`` at its last round, then ``alpha``.
    ``warmup_negative_only=False`` applies the same schedule to positive α.
    """

    alpha: float
    warmup_rounds: int = 0
    ramp_rounds: int = 0
    warmup_negative_only: bool = True

    def __post_init__(self) -> None:
        validate_alpha(self.alpha)
        if self.warmup_rounds < 0 or self.ramp_rounds < 0:
            raise ConfigError("warm-up and ramp lengths must be >= 0 rounds")

    def alpha_at(self, server_round: int) -> float:
        """α for 1-based ``server_round``."""
        if self.alpha >= 0 and self.warmup_negative_only:
            return self.alpha
        if server_round <= self.warmup_rounds:
            return 0.0
        step = server_round - self.warmup_rounds
        if self.ramp_rounds == 0 or step >= self.ramp_rounds:
            return self.alpha
        return self.alpha * step / self.ramp_rounds
