"""Curious server, part 1: soft-label gradient inversion of client updates (seed 003).

Public API: :func:`recover_soft_label` (analytic label and feature recovery from the head's
gradient), :func:`estimate_gradient` (FedAvg updates), :func:`reconstruct_image`
(Inverting-Gradients-style image reconstruction with a soft or hard label).
Ground truth is consumed only by :mod:`fedls.attacks.gradient.scoring`.
"""

from __future__ import annotations

from fedls.attacks.gradient.gradients import HeadGradient, estimate_gradient, head_gradient, head_parameter_names
from fedls.attacks.gradient.label_recovery import AUGMENTATIONS, LabelRecovery, label_loss, recover_soft_label
from fedls.attacks.gradient.reconstruction import ReconstructionResult, reconstruct_image

__all__ = [
    "AUGMENTATIONS",
    "HeadGradient",
    "LabelRecovery",
    "ReconstructionResult",
    "estimate_gradient",
    "head_gradient",
    "head_parameter_names",
    "label_loss",
    "recover_soft_label",
    "reconstruct_image",
]
