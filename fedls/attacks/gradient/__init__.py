"""Curious server, part 1: soft-label gradient inversion of client updates (Wang et al. 2024).

Public API: :func:`recover_soft_label` (analytic label and feature recovery from the head's
gradient), :func:`estimate_gradient` (FedAvg updates), :func:`reconstruct_image`
(Inverting-Gradients-style image reconstruction with a soft or hard label),
:func:`recover_batch_labels` / :func:`recover_update_labels` (per-class counts and α̂ of a batch
or of a client's FedAvg update).
Ground truth is consumed only by :mod:`fedls.attacks.gradient.scoring`.
"""

from __future__ import annotations

from fedls.attacks.gradient.batch_labels import BatchLabelRecovery, recover_batch_labels
from fedls.attacks.gradient.gradients import HeadGradient, estimate_gradient, head_gradient, head_parameter_names
from fedls.attacks.gradient.label_recovery import AUGMENTATIONS, LabelRecovery, label_loss, recover_soft_label
from fedls.attacks.gradient.reconstruction import ReconstructionResult, reconstruct_image
from fedls.attacks.gradient.update_labels import recover_update_labels

__all__ = [
    "AUGMENTATIONS",
    "BatchLabelRecovery",
    "HeadGradient",
    "LabelRecovery",
    "ReconstructionResult",
    "estimate_gradient",
    "head_gradient",
    "head_parameter_names",
    "label_loss",
    "recover_batch_labels",
    "recover_soft_label",
    "recover_update_labels",
    "reconstruct_image",
]
