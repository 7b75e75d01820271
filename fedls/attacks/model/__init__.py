"""Model inversion on the global model: a Plug-&-Play-style attack (Struppek et al. 2024, §4.4, Appx. B.4).

The attack only: it takes the target, a prior trained on the server's public data, the number
of classes and its options. Scoring (the judge, Acc@1 with controls) is in :mod:`fedls.metrics`;
the round observer that composes both is in :mod:`fedls.federation.observers.model_inversion`.
"""

from fedls.attacks.model.config import PPAOptions, PriorOptions
from fedls.attacks.model.generator import Generator
from fedls.attacks.model.ppa import AttackResult, run_ppa
from fedls.attacks.model.prior import Prior, load_or_train_prior, train_prior

__all__ = ["AttackResult", "Generator", "PPAOptions", "Prior", "PriorOptions", "load_or_train_prior", "run_ppa", "train_prior"]
