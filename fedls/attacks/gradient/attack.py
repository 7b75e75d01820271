"""The attack on one client update, using only what the server sees (a ServerView).

Seed 003 pipeline: read (or, for FedAvg, estimate) the head's gradient, recover the soft
label and the head input analytically, then reconstruct the image by gradient matching with
that label — and, as the baseline, with iDLG's hard label.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass

import numpy as np
import torch

from fedls.attacks.gradient.gradients import estimate_gradient, head_gradient, head_parameter_names
from fedls.attacks.gradient.label_recovery import LabelRecovery, recover_soft_label
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.attacks.gradient.reconstruction import ReconstructionResult, hard_label, reconstruct_image
from fedls.attacks.gradient.unrolled import LocalRecipe, reconstruct_from_update
from fedls.config import RunConfig
from fedls.models.base import Classifier
from fedls.training.local import SGD_MOMENTUM
from strategies.observers import ClientUpdate, ServerView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientAttack:
    """What the server learned about one client's probe."""

    node_id: int
    mode: str  # "fedsgd" (gradient sent) or "fedavg" (gradient estimated)
    recovery: LabelRecovery
    soft: ReconstructionResult | None = None  # reconstruction with the recovered soft label
    hard: ReconstructionResult | None = None  # iDLG baseline (one-hot of the recovered top-1)
    client_id: int = -1  # stable client id (partition id) the client reports; -1 if unknown


def client_id(update: ClientUpdate) -> int:
    """The client's stable id: Flower's node ids are random per run, the partition id is not."""
    return int(update.metrics.get("partition-id", -1))


def update_gradient(update: ClientUpdate, view: ServerView, mode: str) -> dict[str, np.ndarray] | None:
    """The gradient the server attacks: sent (FedSGD probe) or ``−Δθ/(η·steps)`` (FedAvg)."""
    if mode == "fedsgd":
        return update.gradient
    steps = int(update.metrics.get("local_steps", 0))
    if steps < 1:
        log.warning("node %s reported no local_steps; cannot estimate its gradient", update.node_id)
        return None
    return estimate_gradient(view.global_weights, update.weights, view.config.lr, steps)


def attack_update(
    update: ClientUpdate,
    view: ServerView,
    model: Classifier,
    options: GradientAttackOptions,
    image_shape: tuple[int, int, int],
) -> ClientAttack | None:
    """Run the attack on one update. ``model`` must have the global architecture; it is loaded
    with the weights the server sent this round. ``None`` when there is nothing to attack."""
    gradient = update_gradient(update, view, options.probe)
    if gradient is None:
        return None
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in view.global_weights.items()})
    head = head_gradient(view.global_weights, gradient, head_parameter_names(model))
    recovery = recover_soft_label(
        head.weight_grad, head.weight, head.bias_grad, head.bias, options.augmentation, options.nonnegative_features  # type: ignore[arg-type]
    )
    soft = hard = None
    if options.recon_steps > 0 and options.probe_batch == 1:
        recipe = declared_recipe(update, view) if options.probe == "fedavg" else None
        if recipe is not None:
            soft, hard = reconstruct_both_unrolled(model, view, update, recovery, image_shape, options, recipe)
        else:
            soft, hard = reconstruct_both(model, gradient, recovery, image_shape, options)
    return ClientAttack(update.node_id, options.probe, recovery, soft, hard, client_id(update))


def reconstruct_both(
    model: Classifier,
    gradient: dict[str, np.ndarray],
    recovery: LabelRecovery,
    image_shape: tuple[int, int, int],
    options: GradientAttackOptions,
) -> tuple[ReconstructionResult, ReconstructionResult]:
    """Soft-label reconstruction (with the x̂ feature term) and the iDLG hard-label baseline,
    from the same seed so only the label assumption differs."""
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in gradient.items()}
    label = torch.as_tensor(recovery.label, dtype=torch.float32)
    features = torch.as_tensor(recovery.features, dtype=torch.float32)
    common = dict(steps=options.recon_steps, lr=options.recon_lr, tv_weight=options.tv_weight, seed=options.seed)
    soft = reconstruct_image(model, tensors, label, image_shape, features=features, feature_weight=options.feature_weight if recovery.success else 0.0, **common)
    hard = reconstruct_image(model, tensors, hard_label(label), image_shape, **common)
    return soft, hard


def declared_recipe(update: ClientUpdate, view: ServerView) -> LocalRecipe | None:
    """The client's local training as the server declared it (run config sent with the round) and
    the client reported it (local steps). ``None`` when it cannot be unrolled (not SGD)."""
    text = view.config.values.get("run-config")
    steps = int(update.metrics.get("local_steps", 0))
    if not text or steps < 1:
        return None
    run = RunConfig.from_dict(tomllib.loads(str(text)))
    if run.optimizer != "sgd" or run.weight_decay:
        return None
    return LocalRecipe(steps=steps, lr=view.config.lr, momentum=SGD_MOMENTUM, max_grad_norm=run.max_grad_norm)


def reconstruct_both_unrolled(
    model: Classifier,
    view: ServerView,
    update: ClientUpdate,
    recovery: LabelRecovery,
    image_shape: tuple[int, int, int],
    options: GradientAttackOptions,
    recipe: LocalRecipe,
) -> tuple[ReconstructionResult, ReconstructionResult]:
    """FedAvg updates: match the observed weight change by unrolling the client's local steps,
    with the recovered soft label and with the iDLG hard label."""
    start = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in view.global_weights.items()}
    delta = {k: torch.as_tensor(np.asarray(update.weights[k], dtype=np.float32)) - start[k] for k in start if k in update.weights}
    label = torch.as_tensor(recovery.label, dtype=torch.float32)
    common = dict(steps=options.recon_steps, lr=options.recon_lr, tv_weight=options.tv_weight, seed=options.seed)
    soft = reconstruct_from_update(model, start, delta, label, image_shape, recipe, **common)
    hard = reconstruct_from_update(model, start, delta, hard_label(label), image_shape, recipe, **common)
    return soft, hard
