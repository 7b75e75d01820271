"""The curious server's model-inversion observer (seed 001 §4.4 on the FedAvg global model).

Attacks the aggregated model at rounds k, 2k, ... and always at the final round; logs the
metrics under ``mia/`` and an image grid (attack results next to real samples per class).
Stable keys read by the compare tool: ``mia/acc1``, ``mia/acc5``, ``mia/delta_eval``,
``mia/xi_train``, ``mia/xi_test``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from fedls.attacks import OBSERVERS
from fedls.attacks.model.config import ModelAttackOptions
from fedls.attacks.model.session import InversionSession
from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.training.seeding import derive_seed
from strategies.observers import GroundTruth, ImageLogger, ServerView

log = logging.getLogger(__name__)
PREFIX = "mia/"


class ModelInversionObserver:
    def __init__(self, options: ModelAttackOptions, config: RunConfig, splits: DatasetSplits, device: torch.device) -> None:
        self.options = options
        self.final_round = config.rounds
        # the same attack seed every round, so rounds differ only by the model attacked
        self.seed = derive_seed(config.seed, options.attack.seed)
        self.session = InversionSession(options, splits, config.model, device)
        self._logged_prior = False

    def should_attack(self, server_round: int) -> bool:
        return server_round > 0 and (server_round % self.options.every == 0 or server_round == self.final_round)

    def on_client_updates(self, view: ServerView, truth: dict[int, GroundTruth], log_image: ImageLogger) -> dict[str, float]:
        return {}

    def on_global_model(self, server_round: int, model: torch.nn.Module, log_image: ImageLogger) -> dict[str, float]:
        if not self.should_attack(server_round):
            return {}
        if not self._logged_prior:  # check the prior visually (DESIGN.md, lessons)
            log_image(f"{PREFIX}prior_samples", self.session.prior_samples(64), 8)
            self._logged_prior = True
        result, seconds = self.session.attack(copy.deepcopy(model), self.seed)
        metrics = self.session.evaluate(result)
        metrics["attack_seconds"] = seconds
        grid, nrow = self.session.comparison_grid(result)
        log_image(f"{PREFIX}attack_vs_real", grid, nrow)
        log.info("round %d model inversion: acc1 %.3f, xi_train %.3f (%.1f s)", server_round, metrics["acc1"], metrics["xi_train"], seconds)
        return {f"{PREFIX}{k}": float(v) for k, v in metrics.items()}


@OBSERVERS.register("model_attack")
def build_model_inversion_observer(
    options: dict[str, Any], config: RunConfig, splits: DatasetSplits, device: torch.device
) -> ModelInversionObserver:
    return ModelInversionObserver(ModelAttackOptions.from_dict(options), config, splits, device)
