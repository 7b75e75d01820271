"""One dataset's model-inversion setup: prior, evaluation model, and attack + evaluation.

Shared by the round observer and the stand-alone command. The prior and evaluation model
are built (or loaded from the cache) once, on first need. The attack itself is given the
target, the prior and the attack config only; private data enters :meth:`evaluate` (metrics)
and :meth:`comparison_grid` (display) and nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from fedls.attacks.model.config import ModelAttackOptions
from fedls.attacks.model.evaluation_model import dataset_tensors, load_or_train_eval_model
from fedls.attacks.model.ppa import AttackResult, StageProgress, run_ppa
from fedls.attacks.model.prior import Prior, load_or_train_prior, prior_quality, sample_prior
from fedls.data import DatasetSplits
from fedls.metrics.inversion import evaluate_inversion
from fedls.models.base import Classifier

log = logging.getLogger(__name__)

TaskProgress = Callable[[str, int, int], None]  # (task, done, total)


class InversionSession:
    def __init__(
        self,
        options: ModelAttackOptions,
        splits: DatasetSplits,
        target_model: str,
        device: torch.device | str = "cpu",
        prior: Prior | None = None,
        progress: TaskProgress | None = None,
    ) -> None:
        self.options = options
        self.splits = splits
        self.target_model = target_model
        self.device = torch.device(device)
        self.progress = progress
        self._prior = prior
        self._eval: tuple[Classifier, str] | None = None
        self._prior_quality: dict[str, float] | None = None

    def _report(self, task: str) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        progress = self.progress
        return lambda done, total: progress(task, done, total)

    @property
    def prior(self) -> Prior:
        if self._prior is None:
            self._prior = load_or_train_prior(
                self.splits.name, self.splits.public, self.splits.image_shape, self.options.prior,
                self.options.cache_dir, self.device, self._report("prior"),
            )
        return self._prior

    @property
    def eval_model(self) -> tuple[Classifier, str]:
        if self._eval is None:
            self._eval = load_or_train_eval_model(
                self.splits.name, self.splits.train, self.splits.image_shape, self.splits.num_classes,
                self.target_model, self.options.evaluation, self.options.cache_dir, self.device, self._report("evaluation model"),
            )
        return self._eval

    def prior_samples(self, n: int = 64) -> torch.Tensor:
        return sample_prior(self.prior, n, seed=self.options.prior.seed, device=self.device)

    def prior_quality(self) -> dict[str, float]:
        """Evaluation-model proxy of prior quality on 500 samples (see :func:`prior_quality`)."""
        if self._prior_quality is None:
            self._prior_quality = prior_quality(self.prior_samples(500), self.eval_model[0], self.device)
        return self._prior_quality

    def attack(self, target: nn.Module, seed: int, progress: StageProgress | None = None) -> tuple[AttackResult, float]:
        """Run PPA on ``target``; returns the result and its wall time in seconds."""
        config = dataclasses.replace(self.options.attack, seed=seed)
        started = time.perf_counter()
        result = run_ppa(target, self.prior, self.splits.num_classes, config, self.device, progress)
        return result, time.perf_counter() - started

    def evaluate(self, result: AttackResult) -> dict[str, float]:
        """Attack-side numbers, the inversion metrics, and the prior's quality proxy."""
        model, arch = self.eval_model
        surrogate = arch if self.options.evaluation.surrogate_model == "auto" else self.options.evaluation.surrogate_model
        metrics = result.summary()
        metrics.update(
            evaluate_inversion(
                result.images, result.targets, model, surrogate, dataset_tensors(self.splits.train),
                dataset_tensors(self.splits.test), self.options.evaluation, self.device,
            )
        )
        metrics.update({f"prior_{k}": v for k, v in self.prior_quality().items()})
        return metrics

    def comparison_grid(self, result: AttackResult, per_class: int = 5) -> tuple[torch.Tensor, int]:
        """Rows of ``per_class`` attack images followed by ``per_class`` real training images of
        the same class (ground truth for display only). Returns images and the row length."""
        x, y = dataset_tensors(self.splits.train)
        rows = []
        for c in result.classes[: self.options.grid_classes]:
            fake = result.images[result.targets == c][:per_class]
            real = x[y == c][:per_class]
            k = min(len(fake), per_class)
            pad = torch.full((per_class - len(real), *x.shape[1:]), -1.0)
            rows.append(torch.cat([fake[:k], torch.full((per_class - k, *x.shape[1:]), -1.0), real, pad]))
        return torch.cat(rows), 2 * per_class
