"""Options of the model-inversion attack and of its generative prior (one schema: :mod:`fedls.schema`).

Struppek et al. 2024 ("Be Careful What You Smooth For", §4.1, Appx. B.4: Plug & Play Attacks).
These are the attacker's sections ``[model_attack.ppa]`` and ``[model_attack.prior]``; the
scorer's ``[model_attack.evaluation]`` is declared in :mod:`fedls.metrics.judge` and the
table that nests all three in :mod:`fedls.federation.observers.model_inversion` (the attack
package may not import the scorers).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import Field, model_validator

from fedls.errors import ConfigError
from fedls.schema import Options

LossName = Literal["poincare", "ce", "gmi", "logit-margin"]
RankingName = Literal["confidence", "margin"]
UnitPair = Annotated[tuple[float, float], Field(description="(low, high)")]


def config_hash(options: Options) -> str:
    """Stable short hash of an option table (part of cache keys)."""
    text = json.dumps(options.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _ordered_in_unit(name: str, pair: tuple[float, float]) -> None:
    lo, hi = pair
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"{name} must satisfy 0 < low <= high <= 1 (got {pair})")


class PriorOptions(Options):
    """``[model_attack.prior]``: the server's DCGAN prior, trained on public images only
    (a generative MIA learns its image prior from auxiliary data; Struppek et al. 2024 §2.1)."""

    latent_dim: int = Field(32, ge=4, le=1024, description="latent size of the generator")
    width: int = Field(64, ge=8, le=1024, description="channels of the generator's widest layer")
    steps: int = Field(1500, ge=1, le=10**6, description="generator updates")
    batch_size: int = Field(64, ge=2, le=4096, description="prior training batch size")
    lr: float = Field(2e-4, gt=0, le=0.1, description="Adam learning rate")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    seed: int = Field(0, ge=0, description="prior training seed")


class PPAOptions(Options):
    """``[model_attack.ppa]``: Plug & Play Attack (Struppek et al. 2024, Appx. B.4) scaled down
    for small images and CPUs.

    ``classes``: 0 = all classes, a number = a seeded random subset, or a list of indices.
    ``candidates_per_class`` latents per class start the optimisation (stage 1, top-k);
    ``samples_per_class`` attack images are kept after selection (stage 3, top-m).
    """

    classes: int | list[int] = Field(0, description="attacked classes: 0 = all, N = a random subset, or a list")
    pool_size: int = Field(2000, ge=1, le=10**7, description="latents scored in stage 1")
    candidates_per_class: int = Field(20, ge=1, le=10**5, description="latents optimised per class (stage-1 top-k)")
    samples_per_class: int = Field(10, ge=1, le=10**5, description="attack images kept per class (stage-3 top-m)")
    steps: int = Field(70, ge=0, le=100_000, description="optimisation steps (stage 2)")
    lr: float = Field(0.005, gt=0, le=10, description="Adam learning rate on the latents")
    betas: UnitPair = Field((0.1, 0.1), description="Adam betas (PPA: 0.1, 0.1)")
    loss: LossName = Field(
        "poincare",
        description="identity loss: poincare (PPA), ce, gmi (CE + discriminator prior), or logit-margin "
        "(adaptive: scale-invariant margin, against inflated logits of negative smoothing)",
    )
    ranking: RankingName = Field(
        "confidence",
        description="stage-1/3 score: confidence (softmax, PPA) or margin (scale-invariant logit margin; adaptive)",
    )
    poincare_target: float = Field(0.9999, gt=0.5, lt=1, description="target entry of the Poincaré one-hot")
    gmi_prior_weight: float = Field(1.0, ge=0, description="weight of the discriminator term of the gmi loss")
    opt_crop_scale: UnitPair = Field((0.9, 1.0), description="random-resized-crop area while optimising")
    opt_flip: float = Field(0.5, ge=0, le=1, description="flip probability while optimising")
    selection_augmentations: int = Field(20, ge=1, le=1000, description="augmentations per image in stage 3")
    selection_crop_scale: UnitPair = Field((0.5, 0.9), description="crop area in stage 3")
    selection_crop_ratio: UnitPair = Field((0.8, 1.2), description="crop aspect ratio in stage 3")
    selection_flip: float = Field(0.5, ge=0, le=1, description="flip probability in stage 3")
    batch_size: int = Field(256, ge=1, le=65536, description="images per forward pass")
    seed: int = Field(0, ge=0, description="attack seed (combined with the run's seed)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if isinstance(self.classes, list):
            if not self.classes or min(self.classes) < 0:
                raise ValueError("classes must list class indices >= 0")
        elif self.classes < 0:
            raise ValueError("classes must be >= 0 (0 = all)")
        if self.samples_per_class > self.candidates_per_class:
            raise ValueError(
                f"samples_per_class ({self.samples_per_class}) must be <= candidates_per_class ({self.candidates_per_class})"
            )
        if self.pool_size < self.candidates_per_class:
            raise ValueError(f"pool_size ({self.pool_size}) must be >= candidates_per_class ({self.candidates_per_class})")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1) (got {self.betas})")
        _ordered_in_unit("opt_crop_scale", self.opt_crop_scale)
        _ordered_in_unit("selection_crop_scale", self.selection_crop_scale)
        lo, hi = self.selection_crop_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"selection_crop_ratio must satisfy 0 < low <= high (got {self.selection_crop_ratio})")
        return self

    def check_classes(self, num_classes: int) -> None:
        """Refuse class indices or counts the target does not have (before any run starts)."""
        if isinstance(self.classes, list):
            bad = [c for c in self.classes if c >= num_classes]
            if bad:
                raise ConfigError(f"model_attack.ppa.classes: {bad} do not exist; "
                                  f"the private task has {num_classes} classes (0-{num_classes - 1})")
        elif self.classes > num_classes:
            raise ConfigError(
                f"model_attack.ppa.classes: {self.classes} is more than the {num_classes} classes of the private task"
            )

    def target_classes(self, num_classes: int) -> list[int]:
        """The attacked classes: all, an explicit list, or a seeded random subset."""
        self.check_classes(num_classes)
        if isinstance(self.classes, list):
            return sorted(set(self.classes))
        if self.classes in (0, num_classes):
            return list(range(num_classes))
        rng = np.random.default_rng(self.seed)
        return sorted(int(c) for c in rng.choice(num_classes, size=self.classes, replace=False))
