"""Plug & Play model inversion on the global model (Struppek et al. 2024, §4.4, Appx. B.4).

Three stages: (1) sampling — score a pool of prior samples with the target under
augmentation (original + flip) and keep the top-k latents per target class; (2) optimisation
— Adam on the latents against the Poincaré loss (or CE / GMI) under a mild random-resized
crop, recording the cosine similarity of consecutive input gradients (§4.4, Eq. 4, Fig. 6b);
(3) selection — keep the top-m latents per class by mean target confidence under strong
augmentations. The best m prior samples per class of stage 1 are returned as well, untouched:
the baseline a scorer compares the attack with (what the prior alone gives).

``ranking = "margin"`` and ``loss = "logit-margin"`` are an adaptive attacker's variants
(see :mod:`fedls.attacks.model.losses`): scale-invariant where softmax saturates on the
inflated logits of a negatively smoothed target.

Threat model: :func:`run_ppa` receives the target model, the prior, the number of classes and
the attack options only. Ground truth (private images, labels) never enters this package;
scoring lives in :mod:`fedls.metrics.inversion`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from fedls.attacks.model.augment import flip, random_resized_crop
from fedls.attacks.model.config import PPAOptions, RankingName
from fedls.attacks.model.losses import cross_entropy_loss, gmi_loss, logit_margin_loss, normalised_margin, poincare_loss
from fedls.attacks.model.prior import Prior
from fedls.errors import ConfigError

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class AttackResult:
    """Selected attack images and what each stage saw (no ground truth in here)."""

    images: torch.Tensor  # [N, C, H, W] in [-1, 1], grouped by class
    targets: torch.Tensor  # [N] attacked class of each image
    baseline_images: torch.Tensor  # [M, C, H, W] the best stage-1 prior samples per class, not optimised
    baseline_targets: torch.Tensor  # [M]
    latents: torch.Tensor  # [N, latent_dim]
    selection_confidence: torch.Tensor  # [N] mean target confidence under strong augmentation
    initial_confidence: torch.Tensor  # [K] stage-1 scores of all optimised candidates
    final_confidence: torch.Tensor  # [K] target confidence of all candidates after optimisation
    grad_cosine_mean: list[float] = field(default_factory=list)  # per step t ≥ 2 (Eq. 4)
    grad_cosine_std: list[float] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Attack-side numbers (need no ground truth)."""
        out = {
            "initial_confidence": float(self.initial_confidence.mean()),
            "final_confidence": float(self.final_confidence.mean()),
            "selection_confidence": float(self.selection_confidence.mean()),
            "final_loss": self.loss_curve[-1] if self.loss_curve else float("nan"),
        }
        if self.grad_cosine_mean:
            out["grad_cosine_mean"] = sum(self.grad_cosine_mean) / len(self.grad_cosine_mean)
            out["grad_cosine_std"] = sum(self.grad_cosine_std) / len(self.grad_cosine_std)
        return out


def _generate(prior: Prior, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([prior.generator(chunk) for chunk in z.split(batch_size)])


@torch.no_grad()
def _logits(target: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([target(chunk).float() for chunk in images.split(batch_size)])


def class_scores(logits: torch.Tensor, ranking: RankingName) -> torch.Tensor:
    """[N, C] score of every image for every class: softmax confidence (PPA) or the
    scale-invariant normalised logit margin (adaptive; see :func:`normalised_margin`)."""
    if ranking == "confidence":
        return torch.softmax(logits, -1)
    n, c = logits.shape
    every = torch.arange(c, device=logits.device).repeat(n)
    return normalised_margin(logits.repeat_interleave(c, dim=0), every).view(n, c)


@torch.no_grad()
def _scores(target: nn.Module, images: torch.Tensor, config: PPAOptions) -> torch.Tensor:
    return class_scores(_logits(target, images, config.batch_size), config.ranking)


@torch.no_grad()
def sample_latents(
    target: nn.Module, prior: Prior, classes: list[int], config: PPAOptions, device: torch.device, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 1: top-``candidates_per_class`` latents per class out of ``pool_size`` by mean target
    score (``ranking``) on the original and flipped image. Returns latents, their targets and
    scores, best first within each class."""
    pool = torch.randn(config.pool_size, prior.generator.latent_dim, generator=rng).to(device)
    images = _generate(prior, pool, config.batch_size).clamp(-1, 1)
    probs = (_scores(target, images, config) + _scores(target, flip(images), config)) / 2
    latents, targets, scores = [], [], []
    for c in classes:
        top = probs[:, c].topk(config.candidates_per_class)
        latents.append(pool[top.indices])
        targets.append(torch.full((config.candidates_per_class,), c, dtype=torch.long))
        scores.append(top.values.cpu())
    return torch.cat(latents), torch.cat(targets).to(device), torch.cat(scores)


def _loss(
    config: PPAOptions, logits: torch.Tensor, targets: torch.Tensor, prior: Prior, images: torch.Tensor
) -> torch.Tensor:
    if config.loss == "poincare":
        return poincare_loss(logits, targets, config.poincare_target)
    if config.loss == "ce":
        return cross_entropy_loss(logits, targets)
    if config.loss == "logit-margin":
        return logit_margin_loss(logits, targets)
    if prior.discriminator is None:
        raise ConfigError("the gmi loss needs a prior with a discriminator; use loss=poincare or ce with a user generator")
    return gmi_loss(logits, targets, prior.discriminator(images), config.gmi_prior_weight)


def optimise_latents(
    target: nn.Module,
    prior: Prior,
    latents: torch.Tensor,
    targets: torch.Tensor,
    config: PPAOptions,
    rng: torch.Generator,
    progress: StageProgress | None = None,
) -> tuple[torch.Tensor, list[float], list[float], list[float]]:
    """Stage 2: Adam (lr, betas from the config; PPA: 0.005, (0.1, 0.1)) on the latents.

    Each step the generated images get a random-resized crop (scale ``opt_crop_scale``) and
    a flip before the target sees them. The gradient of the loss w.r.t. the generated images
    (before augmentation) is compared with the previous step's by cosine similarity per
    sample; the mean and standard deviation over samples are recorded per step (Eq. 4)."""
    z = latents.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=config.lr, betas=config.betas)
    cos_mean: list[float] = []
    cos_std: list[float] = []
    losses: list[float] = []
    previous: torch.Tensor | None = None
    for step in range(config.steps):
        optimizer.zero_grad(set_to_none=True)
        images = prior.generator(z)
        images.retain_grad()
        augmented = random_resized_crop(images, config.opt_crop_scale, flip=config.opt_flip, generator=rng)
        loss = _loss(config, target(augmented), targets, prior, images)
        loss.sum().backward()  # sum: each latent's gradient is independent of how many are attacked
        optimizer.step()
        # set by backward(): the loss depends on ``images`` and retain_grad() keeps it
        assert images.grad is not None
        grad = images.grad.detach().flatten(1)
        if previous is not None:
            cos = torch.nn.functional.cosine_similarity(grad, previous, dim=1)
            cos_mean.append(float(cos.mean()))
            cos_std.append(float(cos.std()) if cos.numel() > 1 else 0.0)
        previous = grad
        losses.append(float(loss.detach().mean()))
        if progress is not None:
            progress("optimise", step + 1, config.steps)
    return z.detach(), cos_mean, cos_std, losses


@torch.no_grad()
def select_results(
    target: nn.Module,
    prior: Prior,
    latents: torch.Tensor,
    targets: torch.Tensor,
    classes: list[int],
    config: PPAOptions,
    rng: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3: score every optimised image by its mean target score (``ranking``) over
    ``selection_augmentations`` strong augmentations (flip, crop scale [0.5, 0.9], ratio
    [0.8, 1.2]) and keep the top ``samples_per_class`` per class."""
    images = _generate(prior, latents, config.batch_size).clamp(-1, 1)
    index = torch.arange(len(targets), device=targets.device)
    score = torch.zeros(len(targets), device=images.device)
    for _ in range(config.selection_augmentations):
        augmented = random_resized_crop(
            images, config.selection_crop_scale, config.selection_crop_ratio, config.selection_flip, generator=rng
        )
        score += _scores(target, augmented, config)[index, targets]
    score /= config.selection_augmentations
    keep = torch.cat([
        torch.nonzero(targets == c).squeeze(1)[score[targets == c].topk(config.samples_per_class).indices] for c in classes
    ])
    return images[keep], targets[keep], latents[keep], score[keep]


def run_ppa(
    target: nn.Module,
    prior: Prior,
    num_classes: int,
    config: PPAOptions,
    device: torch.device | str = "cpu",
    progress: StageProgress | None = None,
) -> AttackResult:
    """Invert ``target`` with the three PPA stages; deterministic for a seed on CPU."""
    device = torch.device(device)
    classes = config.target_classes(num_classes)
    rng = torch.Generator().manual_seed(config.seed)
    target = target.to(device).eval()
    generator = prior.generator
    if isinstance(generator, nn.Module):
        generator.to(device).eval()
    if prior.discriminator is not None:
        prior.discriminator.to(device).eval()
    requires = [p.requires_grad for p in target.parameters()]
    for p in target.parameters():  # the model is fixed; only latents get gradients
        p.requires_grad_(False)
    try:
        if progress is not None:
            progress("sample", 0, 1)
        latents, targets, initial = sample_latents(target, prior, classes, config, device, rng)
        # the stage-1 baseline: each class's best samples_per_class prior samples (candidates are
        # best first within a class), scored like the attack images
        first = torch.cat([torch.nonzero(targets == c).squeeze(1)[: config.samples_per_class] for c in classes])
        with torch.no_grad():
            baseline_images = _generate(prior, latents[first], config.batch_size).clamp(-1, 1)
        baseline_targets = targets[first]
        if progress is not None:
            progress("sample", 1, 1)
        latents, cos_mean, cos_std, losses = optimise_latents(target, prior, latents, targets, config, rng, progress)
        with torch.no_grad():
            final_images = _generate(prior, latents, config.batch_size).clamp(-1, 1)
            final = _scores(target, final_images, config)[torch.arange(len(targets)), targets].cpu()
        images, kept_targets, kept_latents, score = select_results(target, prior, latents, targets, classes, config, rng)
        if progress is not None:
            progress("select", 1, 1)
    finally:
        for p, flag in zip(target.parameters(), requires, strict=True):
            p.requires_grad_(flag)
    return AttackResult(
        images=images.cpu(),
        targets=kept_targets.cpu(),
        baseline_images=baseline_images.cpu(),
        baseline_targets=baseline_targets.cpu(),
        latents=kept_latents.cpu(),
        selection_confidence=score.cpu(),
        initial_confidence=initial,
        final_confidence=final,
        grad_cosine_mean=cos_mean,
        grad_cosine_std=cos_std,
        loss_curve=losses,
        classes=classes,
    )
