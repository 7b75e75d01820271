"""Validated hyper-parameters of the model-inversion attack, its prior and its evaluation.

Seed 001 §4.1 and Appx. B.4 (Plug & Play Attacks). Every number the attack uses lives here;
the observer's ``model_attack`` table is a flat dict whose keys map onto these classes:
``prior_*`` keys go to :class:`PriorConfig`, ``eval_*`` keys to :class:`EvalConfig`, the
rest to :class:`PPAConfig` or :class:`ModelAttackOptions`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from fedls.errors import ConfigError

LossName = Literal["poincare", "ce", "gmi"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_range(name: str, lo: float, hi: float, *values: float) -> None:
    for value in values:
        _check(lo <= value <= hi, f"model-attack option {name} must lie in [{lo}, {hi}] (got {value})")


def config_hash(config: object) -> str:
    """Stable short hash of a dataclass config (part of cache keys)."""
    text = json.dumps(asdict(config), sort_keys=True, default=str)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PriorConfig:
    """The server's DCGAN prior, trained on public images only (seed 001 §2.1: the generative
    prior of a generative MIA is learned from auxiliary data)."""

    latent_dim: int = 32
    width: int = 64  # channels of the generator's widest layer
    steps: int = 1500  # generator updates
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _check(4 <= self.latent_dim <= 1024, f"prior_latent_dim must be in [4, 1024] (got {self.latent_dim})")
        _check(8 <= self.width <= 1024, f"prior_width must be in [8, 1024] (got {self.width})")
        _check(1 <= self.steps <= 10**6, f"prior_steps must be in [1, 1e6] (got {self.steps})")
        _check(2 <= self.batch_size <= 4096, f"prior_batch_size must be in [2, 4096] (got {self.batch_size})")
        _check(0 < self.lr <= 0.1, f"prior_lr must be in (0, 0.1] (got {self.lr})")
        _check(0 <= self.beta1 < 1, f"prior_beta1 must be in [0, 1) (got {self.beta1})")


@dataclass(frozen=True)
class PPAConfig:
    """Plug & Play Attack (seed 001 Appx. B.4) scaled down for small images and CPUs.

    ``classes``: number of target classes sampled at random, or 0 for all classes, or an
    explicit list. ``candidates_per_class`` latents per class start the optimisation
    (stage 1, top-k); ``samples_per_class`` are kept after selection (stage 3, top-m).
    """

    classes: int | tuple[int, ...] = 0
    pool_size: int = 2000
    candidates_per_class: int = 20
    samples_per_class: int = 10
    steps: int = 70
    lr: float = 0.005
    betas: tuple[float, float] = (0.1, 0.1)
    loss: LossName = "poincare"
    poincare_target: float = 0.9999
    gmi_prior_weight: float = 1.0
    opt_crop_scale: tuple[float, float] = (0.9, 1.0)
    opt_flip: float = 0.5
    selection_augmentations: int = 20
    selection_crop_scale: tuple[float, float] = (0.5, 0.9)
    selection_crop_ratio: tuple[float, float] = (0.8, 1.2)
    selection_flip: float = 0.5
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        for name in ("betas", "opt_crop_scale", "selection_crop_scale", "selection_crop_ratio"):
            value = getattr(self, name)
            _check(isinstance(value, (tuple, list)) and len(value) == 2, f"model-attack option {name} needs two numbers")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if isinstance(self.classes, tuple):
            _check(len(self.classes) > 0 and all(c >= 0 for c in self.classes), "classes must list class indices >= 0")
        else:
            _check(isinstance(self.classes, int) and self.classes >= 0, f"classes must be >= 0 (0 = all) (got {self.classes})")
        _check(self.loss in ("poincare", "ce", "gmi"), f"unknown model-attack loss {self.loss!r}; choose poincare, ce or gmi")
        _check(1 <= self.samples_per_class <= self.candidates_per_class,
               f"samples_per_class ({self.samples_per_class}) must be in [1, candidates_per_class={self.candidates_per_class}]")
        _check(self.pool_size >= self.candidates_per_class,
               f"pool_size ({self.pool_size}) must be >= candidates_per_class ({self.candidates_per_class})")
        _check(0 <= self.steps <= 100_000, f"steps must be in [0, 100000] (got {self.steps})")
        _check(0 < self.lr <= 10, f"lr must be in (0, 10] (got {self.lr})")
        _check_range("betas", 0.0, 0.9999, *self.betas)
        _check(0.5 < self.poincare_target < 1, f"poincare_target must be in (0.5, 1) (got {self.poincare_target})")
        _check(self.gmi_prior_weight >= 0, "gmi_prior_weight must be >= 0")
        for name in ("opt_crop_scale", "selection_crop_scale"):
            lo, hi = getattr(self, name)
            _check(0 < lo <= hi <= 1, f"{name} must satisfy 0 < low <= high <= 1 (got {(lo, hi)})")
        lo, hi = self.selection_crop_ratio
        _check(0 < lo <= hi, f"selection_crop_ratio must satisfy 0 < low <= high (got {(lo, hi)})")
        _check_range("opt_flip", 0, 1, self.opt_flip)
        _check_range("selection_flip", 0, 1, self.selection_flip)
        _check(1 <= self.selection_augmentations <= 1000, "selection_augmentations must be in [1, 1000]")
        _check(1 <= self.batch_size <= 65536, "batch_size must be in [1, 65536]")

    def target_classes(self, num_classes: int) -> list[int]:
        """The attacked classes: all, an explicit list, or a seeded random subset."""
        import numpy as np

        if isinstance(self.classes, tuple):
            bad = [c for c in self.classes if c >= num_classes]
            _check(not bad, f"classes {bad} do not exist; the model has {num_classes} classes")
            return sorted(set(self.classes))
        if self.classes == 0 or self.classes >= num_classes:
            return list(range(num_classes))
        rng = np.random.default_rng(self.seed)
        return sorted(int(c) for c in rng.choice(num_classes, size=self.classes, replace=False))


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation model (different architecture than the target, trained centrally on the
    private training data; seed 001 §4.1) and knowledge-extraction surrogates (ξ)."""

    model: str = "auto"  # "auto": an architecture other than the target's
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    surrogate_model: str = "auto"  # "auto": same architecture as the evaluation model
    surrogate_inits: int = 3
    surrogate_epochs: int = 60
    face_weights: str | None = None  # local VGGFace2 InceptionResnetV1 state_dict for δ_face
    inception_weights: str | None = None  # local FID Inception weights

    def __post_init__(self) -> None:
        _check(1 <= self.epochs <= 10_000, f"eval_epochs must be in [1, 10000] (got {self.epochs})")
        _check(1 <= self.batch_size <= 65536, "eval_batch_size must be in [1, 65536]")
        _check(0 < self.lr <= 1, f"eval_lr must be in (0, 1] (got {self.lr})")
        _check(1 <= self.surrogate_inits <= 100, f"eval_surrogate_inits must be in [1, 100] (got {self.surrogate_inits})")
        _check(1 <= self.surrogate_epochs <= 10_000, "eval_surrogate_epochs must be in [1, 10000]")


@dataclass(frozen=True)
class ModelAttackOptions:
    """The observer's options: when to attack, where caches live, and the three configs."""

    every: int = 5
    cache_dir: str | None = None
    grid_classes: int = 10  # classes shown in the logged image grid
    attack: PPAConfig = field(default_factory=PPAConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check(isinstance(self.every, int) and self.every >= 1, f"model-attack every must be a whole number >= 1 (got {self.every})")
        _check(self.grid_classes >= 1, "grid_classes must be >= 1")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> ModelAttackOptions:
        """Build from the flat ``model_attack`` table; unknown keys are an error listing the valid ones."""
        own = {f.name for f in fields(cls)} - {"attack", "prior", "evaluation"}
        attack_keys = {f.name for f in fields(PPAConfig)}
        prior_keys = {f.name for f in fields(PriorConfig)}
        eval_keys = {f.name for f in fields(EvalConfig)}
        top: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {"attack": {}, "prior": {}, "evaluation": {}}
        unknown = []
        for raw_key, value in options.items():
            key = raw_key.replace("-", "_")
            if key in ("enabled", "enable"):
                continue  # a switch only; a non-empty table already turns the attack on
            if key in own:
                top[key] = value
            elif key.startswith("prior_") and key[6:] in prior_keys:
                parts["prior"][key[6:]] = value
            elif key.startswith("eval_") and key[5:] in eval_keys:
                parts["evaluation"][key[5:]] = value
            elif key in attack_keys:
                parts["attack"][key] = value
            else:
                unknown.append(raw_key)
        if unknown:
            valid = sorted(own | attack_keys | {f"prior_{k}" for k in prior_keys} | {f"eval_{k}" for k in eval_keys})
            raise ConfigError(f"unknown model_attack option(s) {', '.join(sorted(unknown))}; valid: {', '.join(valid)}")
        try:
            return cls(
                attack=PPAConfig(**parts["attack"]),
                prior=PriorConfig(**parts["prior"]),
                evaluation=EvalConfig(**parts["evaluation"]),
                **top,
            )
        except TypeError as exc:  # wrong value types reach here as TypeErrors from comparisons
            raise ConfigError(f"bad model_attack option value ({exc}); check the types in the table") from None
