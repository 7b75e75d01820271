"""Model inversion on the global model: a Plug-&-Play-style attack (seed 001 §4.4, Appx. B.4)."""

from fedls.attacks.model.config import EvalConfig, ModelAttackOptions, PPAConfig, PriorConfig
from fedls.attacks.model.generator import Generator
from fedls.attacks.model.ppa import AttackResult, run_ppa
from fedls.attacks.model.prior import Prior, load_or_train_prior, train_prior

__all__ = [
    "AttackResult", "EvalConfig", "Generator", "ModelAttackOptions", "PPAConfig", "Prior", "PriorConfig",
    "load_or_train_prior", "run_ppa", "train_prior",
]
