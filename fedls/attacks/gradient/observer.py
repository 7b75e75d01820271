"""The gradient attack as a round observer of the curious server (``gradient_attack`` section).

Per round it asks ``clients`` of the sampled clients for a probe (:meth:`select_probes`),
attacks their replies with :mod:`fedls.attacks.gradient.attack` (ServerView only), and then —
separately — scores the result against the ground truth with
:mod:`fedls.attacks.gradient.scoring`. Metric keys start with ``gradient/``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from fedls.attacks import OBSERVERS
from fedls.attacks.gradient.attack import ClientAttack, attack_update, client_id
from fedls.attacks.gradient.gradients import head_parameter_names
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.attacks.gradient.scoring import comparison_grid, score_attack, true_features
from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.defenses import build_defense
from fedls.models import build_model
from fedls.models.base import Classifier
from strategies.observers import GroundTruth, ImageLogger, ServerView

log = logging.getLogger(__name__)


class GradientAttackObserver:
    """Curious server, part 1: soft-label gradient inversion of the probed clients' updates."""

    def __init__(self, options: GradientAttackOptions, model: Classifier, image_shape: tuple[int, int, int]) -> None:
        self.options = options
        self.model = model
        self.image_shape = image_shape
        self._rng = random.Random(options.seed)
        self._probed: dict[int, set[int]] = {}

    def select_probes(self, server_round: int, client_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Stable client ids (partition ids) to probe this round, drawn with the attack's seed."""
        if (server_round - 1) % self.options.every:
            return {}
        chosen = self._rng.sample(sorted(client_ids), min(self.options.clients, len(client_ids)))
        self._probed[server_round] = set(chosen)
        return {node: self.options.probe_config() for node in chosen}

    def on_client_updates(
        self, view: ServerView, truth: dict[int, GroundTruth], log_image: ImageLogger
    ) -> dict[str, float]:
        attacks = self.attack(view)
        if not attacks:
            return {}
        return self.score(attacks, truth, log_image)

    def attack(self, view: ServerView) -> list[ClientAttack]:
        """The attack proper: only the ServerView goes in."""
        probed = self._probed.pop(view.config.server_round, None)
        results = []
        for update in view.updates:
            if self.options.probe == "fedsgd" and update.gradient is None:
                continue
            if self.options.probe == "fedavg" and probed is not None and client_id(update) not in probed:
                continue
            result = attack_update(update, view, self.model, self.options, self.image_shape)
            if result is not None:
                results.append(result)
        return results

    def score(self, attacks: list[ClientAttack], truth: dict[int, GroundTruth], log_image: ImageLogger) -> dict[str, float]:
        """Metrics against ground truth (kept apart from :meth:`attack`)."""
        metrics: dict[str, float] = {
            "gradient/clients_attacked": float(len(attacks)),
            "gradient/claimed_success_rate": float(np.mean([a.recovery.success for a in attacks])),
        }
        per_client: list[dict[str, float]] = []
        stable_ids = {a.node_id: a.client_id for a in attacks}
        for attack in attacks:
            if attack.node_id not in truth:
                continue
            scores = score_attack(attack, truth[attack.node_id], true_features(self.model, truth[attack.node_id]))
            per_client.append(scores)
            for key in ("label_success", "label_max_error", "alpha_error", "mixup_error"):
                if key in scores:
                    metrics[f"gradient/client_{stable_ids[attack.node_id]}/{key}"] = scores[key]
        if per_client:
            for key in sorted({k for s in per_client for k in s}):
                values = [s[key] for s in per_client if key in s]
                name = "success_rate" if key == "label_success" else key
                metrics[f"gradient/{name}"] = float(np.mean(values))
        grid = comparison_grid(attacks[: self.options.grid], truth)
        if grid is not None:
            log_image("gradient/originals_soft_idlg", grid, nrow=grid.shape[0] // 3)
        return metrics

    def on_global_model(self, server_round: int, model: torch.nn.Module, log_image: ImageLogger) -> dict[str, float]:
        return {}


@OBSERVERS.register("gradient_attack")
def build_gradient_observer(
    options: dict[str, Any], config: RunConfig, splits: DatasetSplits, device: torch.device
) -> GradientAttackObserver:
    """Factory used by :func:`fedls.attacks.build_observers`. The attack runs on CPU: it is
    cheap for the analytic part and the reconstruction models are small."""
    parsed = GradientAttackOptions.from_dict(options)
    model = build_defense(config.defense, config.defense_options).prepare_model(
        build_model(config.model, splits.image_shape, splits.num_classes)
    )
    head_parameter_names(model)  # fail at start-up, not in round 1, if the head is unsupported
    return GradientAttackObserver(parsed, model.eval(), splits.image_shape)
