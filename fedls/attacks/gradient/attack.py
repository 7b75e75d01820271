"""The attack on client updates, using only what the server sees (a :class:`ServerView`).

Honest-but-curious (default): from every client's real FedAvg update the server recovers the
per-class label counts and α of the client's local data (batch label recovery, modelling the
declared recipe). Malicious probe modes follow Wang et al. (2024)'s single-update pipeline:
read (FedSGD) or estimate (FedAvg) the head's gradient, recover the soft label and the head
input analytically, then reconstruct the image with that label — and, as the baseline, with
iDLG's hard label (Zhao et al. 2020).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fedls.attacks.gradient.gradients import estimate_gradient, head_gradient, head_parameter_names
from fedls.attacks.gradient.label_recovery import LabelRecovery, recover_soft_label
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.attacks.gradient.reconstruction import ReconstructionResult, hard_label, reconstruct_image
from fedls.attacks.gradient.unrolled import LocalRecipe, reconstruct_from_update
from fedls.models.base import Classifier
from fedls.threat_model import ClientUpdate, ProbeRequest, ServerView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateLabelLeak:
    """Per-class label counts and α the server read off one client's FedAvg update."""

    client_id: int
    counts: np.ndarray
    alpha: float
    success: bool  # the attacker's own verdict (no ground truth)
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeLeak:
    """What a malicious server learned from one client's probe."""

    client_id: int
    mode: str  # "fedsgd" (gradient sent) or "fedavg" (gradient estimated from the update)
    recovery: LabelRecovery
    soft: ReconstructionResult | None = None  # reconstruction with the recovered soft label
    hard: ReconstructionResult | None = None  # iDLG baseline (one-hot of the recovered top-1)


@dataclass(frozen=True)
class GradientAttackResult:
    server_round: int
    label_leaks: list[UpdateLabelLeak]
    probe_leaks: list[ProbeLeak]
    seconds: float


class GradientAttack:
    """The curious server's attack on the clients' updates of one round."""

    def __init__(self, options: GradientAttackOptions, model: Classifier, image_shape: tuple[int, int, int]) -> None:
        self.options = options
        self.model = model.eval()
        self.image_shape = image_shape
        self.head_names = head_parameter_names(model)  # fails at start-up if the head is unsupported
        self._rng = random.Random(options.seed)  # the attack's own stream: never the clients'
        self._probed: dict[int, set[int]] = {}

    def attacks_round(self, server_round: int) -> bool:
        return (server_round - 1) % self.options.every == 0

    def probe_requests(self, server_round: int, client_ids: Sequence[int]) -> dict[int, ProbeRequest]:
        """Malicious modes only: the clients (stable ids) to probe this round."""
        if not self.options.malicious or not self.attacks_round(server_round):
            return {}
        chosen = self._rng.sample(sorted(client_ids), min(self.options.clients, len(client_ids)))
        self._probed[server_round] = set(chosen)
        return {client: self.options.probe_request() for client in chosen}

    def run(self, view: ServerView) -> GradientAttackResult | None:
        if not self.attacks_round(view.server_round):
            return None
        started = time.perf_counter()
        probed = self._probed.pop(view.server_round, set())
        label_leaks = [self.recover_counts(update, view) for update in view.updates if update.client_id not in probed]
        probe_leaks = [
            leak for update in view.updates if update.client_id in probed if (leak := self.attack_probe(update, view)) is not None
        ]
        return GradientAttackResult(view.server_round, label_leaks, probe_leaks, time.perf_counter() - started)

    def recover_counts(self, update: ClientUpdate, view: ServerView) -> UpdateLabelLeak:
        """Batch label recovery from the real update (the honest-but-curious channel)."""
        from fedls.attacks.gradient.update_labels import recover_update_labels

        result = recover_update_labels(
            view.global_weights, update.weights, update.recipe,
            num_examples=update.num_examples, local_steps=update.local_steps, head_names=self.head_names,
        )
        return UpdateLabelLeak(
            update.client_id, np.asarray(result.counts), float(result.alpha), bool(result.success), dict(result.diagnostics)
        )

    def attack_probe(self, update: ClientUpdate, view: ServerView) -> ProbeLeak | None:
        mode = "fedsgd" if self.options.threat == "malicious-fedsgd" else "fedavg"
        gradient = update.gradient if mode == "fedsgd" else _estimated_gradient(update, view)
        if gradient is None:
            return None
        self.model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in view.global_weights.items()})
        head = head_gradient(view.global_weights, gradient, self.head_names)
        recovery = recover_soft_label(
            head.weight_grad, head.weight, head.bias_grad, head.bias, self.options.augmentation, self.options.nonnegative_features
        )
        soft = hard = None
        if self.options.recon_steps > 0 and self.options.probe_batch == 1:
            recipe = _unrollable(update)
            if mode == "fedavg" and recipe is not None:
                soft, hard = self._reconstruct_unrolled(view, update, recovery, recipe)
            else:
                soft, hard = self._reconstruct(gradient, recovery)
        return ProbeLeak(update.client_id, mode, recovery, soft, hard)

    def _reconstruct(
        self, gradient: dict[str, np.ndarray], recovery: LabelRecovery
    ) -> tuple[ReconstructionResult, ReconstructionResult]:
        """Soft-label reconstruction (with the x̂ feature term) and the iDLG hard-label baseline,
        from the same seed so only the label assumption differs."""
        tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in gradient.items()}
        label = torch.as_tensor(recovery.label, dtype=torch.float32)
        features = torch.as_tensor(recovery.features, dtype=torch.float32)
        weight = self.options.feature_weight if recovery.success else 0.0
        o = self.options
        soft = reconstruct_image(self.model, tensors, label, self.image_shape, features=features, feature_weight=weight,
                                 steps=o.recon_steps, lr=o.recon_lr, tv_weight=o.tv_weight, seed=o.seed)
        hard = reconstruct_image(self.model, tensors, hard_label(label), self.image_shape,
                                 steps=o.recon_steps, lr=o.recon_lr, tv_weight=o.tv_weight, seed=o.seed)
        return soft, hard

    def _reconstruct_unrolled(
        self, view: ServerView, update: ClientUpdate, recovery: LabelRecovery, recipe: LocalRecipe
    ) -> tuple[ReconstructionResult, ReconstructionResult]:
        """FedAvg probe: match the observed weight change by unrolling the client's local steps."""
        start = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in view.global_weights.items()}
        delta = {
            k: torch.as_tensor(np.asarray(update.weights[k], dtype=np.float32)) - start[k] for k in start if k in update.weights
        }
        label = torch.as_tensor(recovery.label, dtype=torch.float32)
        o = self.options
        soft = reconstruct_from_update(self.model, start, delta, label, self.image_shape, recipe,
                                       steps=o.recon_steps, lr=o.recon_lr, tv_weight=o.tv_weight, seed=o.seed)
        hard = reconstruct_from_update(self.model, start, delta, hard_label(label), self.image_shape, recipe,
                                       steps=o.recon_steps, lr=o.recon_lr, tv_weight=o.tv_weight, seed=o.seed)
        return soft, hard


def _estimated_gradient(update: ClientUpdate, view: ServerView) -> dict[str, np.ndarray] | None:
    """``−Δθ/(η·steps)`` from a FedAvg update; ``None`` when the client reported no steps."""
    if update.local_steps < 1:
        log.warning("client %s reported no local steps; cannot estimate its gradient", update.client_id)
        return None
    return estimate_gradient(view.global_weights, update.weights, update.recipe.lr, update.local_steps)


def _unrollable(update: ClientUpdate) -> LocalRecipe | None:
    """The client's declared training as an unrollable recipe; ``None`` when it is not SGD."""
    recipe = update.recipe
    if recipe.optimizer != "sgd" or recipe.weight_decay or update.local_steps < 1:
        return None
    return LocalRecipe(steps=update.local_steps, lr=recipe.lr, momentum=recipe.momentum, max_grad_norm=recipe.max_grad_norm)
