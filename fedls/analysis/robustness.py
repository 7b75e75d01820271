"""Is a label-smoothed model really robust? (Struppek et al. 2024, Appx. C.8, Fu et al. (2020))

Struppek et al. (2024) Table 11 reports that LS (negative LS even more) lowers the success of FGSM and
PGD. Fu et al. (2020) shows that such robustness is incomplete: LS models survive plain PGD with
small steps, but random restarts, larger steps, a margin (CW-style) loss and examples
transferred from a hard-label model break them. This module runs the whole ladder on one
model, targeted and untargeted, so both readings sit in one table.

Transfer: adversarial examples are crafted on a hard-label (α = 0) *reference* model with
``transfer_spec`` and then fed to the evaluated model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from fedls.analysis.adversarial import AttackSpec, is_success, run_attack
from fedls.data.base import ImageDataset
from fedls.errors import ConfigError
from fedls.models.base import Classifier

log = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]


def default_attacks() -> tuple[AttackSpec, ...]:
    """The ladder, weakest first: the PGD rows vary one thing at a time (Fu et al. 2020, Table 3)."""
    return (
        AttackSpec("fgsm", steps=1, step_fraction=1.0, random_start=False),
        AttackSpec("pgd10-small-step", steps=10, step_fraction=0.1),  # Fu et al.'s (2020) PGD step: ε/10
        AttackSpec("pgd10-large-step", steps=10, step_fraction=0.5),
        AttackSpec("pgd10-restarts5", steps=10, step_fraction=0.1, restarts=5),
        AttackSpec("pgd10-margin", steps=10, step_fraction=0.1, loss="margin"),
        AttackSpec("pgd20-margin-large-restarts3", steps=20, step_fraction=0.25, restarts=3, loss="margin"),
    )


@dataclass(frozen=True)
class RobustnessConfig:
    """ε is L∞ in the [-1, 1] image range: 0.25 = 32/255 in [0, 1] terms. The 8×8 digits
    are coarse (17 grey levels, 0.125 apart in [-1, 1]); at 8/255 nothing moves."""

    epsilon: float = 0.25
    samples: int = 200  # test samples attacked
    attacks: tuple[AttackSpec, ...] = field(default_factory=default_attacks)
    transfer_spec: AttackSpec = AttackSpec("transfer-pgd20", steps=20, step_fraction=0.25, loss="margin")
    seed: int = 0
    batch_size: int = 200
    # hard-label reference trained centrally when none is given
    reference_epochs: int = 15
    reference_lr: float = 0.05
    reference_batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0 < self.epsilon <= 2:
            raise ConfigError(f"epsilon must be in (0, 2] (images are in [-1, 1]; got {self.epsilon})")
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError("samples and batch-size must be >= 1")
        if self.reference_epochs < 1 or not self.reference_lr > 0 or self.reference_batch_size < 1:
            raise ConfigError("reference epochs, lr and batch size must be positive")
        names = [a.name for a in self.attacks]
        if len(set(names)) != len(names):
            raise ConfigError("attack names must be distinct")


def random_targets(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from the true one, per sample (Struppek et al. 2024, C.8)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes


def take(dataset: ImageDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of ``dataset`` as tensors."""
    xs, ys = next(iter(DataLoader(dataset, batch_size=min(n, len(dataset)), shuffle=False)))
    return xs, torch.as_tensor(ys)


@dataclass
class RobustnessRow:
    attack: str
    mode: str  # "untargeted" / "targeted"
    accuracy: float  # accuracy on the true label under attack
    success: float  # untargeted: pred ≠ y among clean-correct; targeted: pred = t among all


def _score(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None, clean_correct: torch.Tensor
) -> tuple[float, float]:
    accuracy = float((logits.argmax(1) == labels).float().mean())
    success = is_success(logits, labels, targets)
    if targets is None:
        rate = float(success[clean_correct].float().mean()) if clean_correct.any() else float("nan")
    else:
        rate = float(success.float().mean())
    return accuracy, rate


def evaluate_robustness(
    model: torch.nn.Module, reference: torch.nn.Module | None, dataset: ImageDataset, num_classes: int,
    config: RobustnessConfig, progress: ProgressFn | None = None,
) -> tuple[float, list[RobustnessRow]]:
    """Clean accuracy and one row per (attack, mode), transfer from ``reference`` last."""
    model.eval()
    images, labels = take(dataset, config.samples)
    targets = random_targets(labels, num_classes, torch.Generator().manual_seed(config.seed))
    with torch.no_grad():
        clean_logits = model(images)
    clean_correct = clean_logits.argmax(1) == labels
    clean_acc = float(clean_correct.float().mean())
    specs: list[tuple[AttackSpec, torch.nn.Module]] = [(s, model) for s in config.attacks]
    if reference is not None:
        specs.append((config.transfer_spec, reference.eval()))
    rows: list[RobustnessRow] = []
    total = 2 * len(specs)
    for i, (spec, source) in enumerate(specs):
        for j, (mode, tgt) in enumerate((("untargeted", None), ("targeted", targets))):
            adv = torch.cat([
                run_attack(source, images[k : k + config.batch_size], labels[k : k + config.batch_size], config.epsilon, spec,
                           None if tgt is None else tgt[k : k + config.batch_size], seed=config.seed + k)
                for k in range(0, len(labels), config.batch_size)
            ])
            with torch.no_grad():
                logits = model(adv)
            acc, rate = _score(logits, labels, tgt, clean_correct)
            rows.append(RobustnessRow(spec.name, mode, acc, rate))
            log.info("%s %s: accuracy %.3f success %.3f", spec.name, mode, acc, rate)
            if progress is not None:
                progress("attacks", 2 * i + j + 1, total)
    return clean_acc, rows


def train_reference(
    model: Classifier, dataset: ImageDataset, config: RobustnessConfig, progress: ProgressFn | None = None
) -> Classifier:
    """Train ``model`` (fresh weights) centrally with hard labels: the transfer source (Fu et al. 2020, §3.5)."""
    from fedls.defenses.base import Defense, TrainingContext
    from fedls.training.local import train_local
    from fedls.training.seeding import seed_everything

    generator = seed_everything(config.seed)
    for epoch in range(config.reference_epochs):
        ctx = TrainingContext(server_round=epoch + 1, client_id=0, num_samples=len(dataset),
                              batch_size=config.reference_batch_size, local_epochs=1, lr=config.reference_lr,
                              device=torch.device("cpu"))
        result = train_local(model, dataset, 0.0, ctx, Defense(), generator)
        log.info("reference epoch %d loss %.4f", epoch + 1, result.loss)
        if progress is not None:
            progress("reference training", epoch + 1, config.reference_epochs)
    return model.eval()
