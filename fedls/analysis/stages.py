"""Which stage of model inversion does label smoothing affect? (Struppek et al. 2024, §4.4, Appx. C.4)

The three PPA stages of :mod:`fedls.attacks.model.ppa` are run with each stage's model
swapped while the others are held fixed, and every result is scored by the evaluation
model (Acc@1 and mean confidence in the attacked class):

1. **Sampling** (Fig. 6a, Tab. 5): one fixed latent pool (same seed for every model); each
   model picks its top candidates per class; the picked images are scored.
2. **Optimisation** (Fig. 6b/7, Tab. 6): the candidates picked by the *first* model are
   optimised against each model; per step, the cosine similarity of consecutive input
   gradients (Eq. 4, recorded by ``optimise_latents``), and the results are scored.
3. **Selection** (Tab. 7): each model's optimised candidates are re-selected by every
   model; the selections are scored.

The first run given is the baseline (use the hard-label model, as the paper does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fedls.analysis.runs import TrainedRun
from fedls.attacks.model.ppa import optimise_latents, sample_latents, select_results
from fedls.attacks.model.prior import Prior
from fedls.errors import ConfigError
from fedls.federation.observers.model_inversion import ModelAttackOptions

log = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]


@dataclass
class StagesResult:
    sampling: list[dict[str, object]] = field(default_factory=list)
    optimisation: list[dict[str, object]] = field(default_factory=list)
    selection: list[dict[str, object]] = field(default_factory=list)
    cosine_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)


@torch.no_grad()
def score_images(eval_model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Evaluation-model Acc@1 and mean confidence in the attacked class."""
    probs = torch.cat([torch.softmax(eval_model(chunk), -1) for chunk in images.split(256)])
    return {
        "eval_acc1": float((probs.argmax(1) == targets).float().mean()),
        "eval_confidence": float(probs[torch.arange(len(targets)), targets].mean()),
    }


@torch.no_grad()
def _generate(prior: Prior, latents: torch.Tensor) -> torch.Tensor:
    return torch.cat([prior.generator(chunk) for chunk in latents.split(256)]).clamp(-1, 1)


class _Frozen:
    """Target parameters need no gradients while latents are optimised (and must be restored)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = models

    def __enter__(self) -> None:
        self.flags = [[p.requires_grad for p in m.parameters()] for m in self.models]
        for m in self.models:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for m, flags in zip(self.models, self.flags, strict=True):
            for p, f in zip(m.parameters(), flags, strict=True):
                p.requires_grad_(f)


def analyse_stages(
    runs: Sequence[TrainedRun], prior: Prior, eval_model: nn.Module, options: ModelAttackOptions,
    progress: ProgressFn | None = None,
) -> StagesResult:
    """Run the three stage ablations for ``runs`` (the first is the baseline)."""
    if len(runs) < 2:
        raise ConfigError("the stage analysis compares models; pass at least two run directories (hard-label first)")
    shapes = {(r.splits.name, r.splits.image_shape, r.splits.num_classes) for r in runs}
    if len(shapes) != 1:
        raise ConfigError("all runs must use the same dataset, image size and classes")
    config = options.ppa
    device = torch.device("cpu")
    classes = config.target_classes(runs[0].splits.num_classes)
    eval_model.eval()
    result = StagesResult()
    total = 3 * len(runs) + len(runs) ** 2
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("stages", done, total)

    with _Frozen([r.model for r in runs]):
        # Stage 1: same pool (same rng seed) for every model
        picked = []
        for run in runs:
            latents, targets, scores = sample_latents(
                run.model, prior, classes, config, device, torch.Generator().manual_seed(config.seed)
            )
            picked.append((latents, targets))
            result.sampling.append({"sampling_model": run.label, "alpha": run.config.alpha,
                                    "target_confidence": float(scores.mean()),
                                    **score_images(eval_model, _generate(prior, latents), targets)})
            tick()
        # Stage 2: the baseline's candidates, optimised against each model
        base_latents, base_targets = picked[0]
        optimised = []
        for run in runs:
            z, cos_mean, cos_std, _ = optimise_latents(
                run.model, prior, base_latents, base_targets, config, torch.Generator().manual_seed(config.seed + 1)
            )
            optimised.append(z)
            result.cosine_curves[run.label] = {"mean": cos_mean, "std": cos_std}
            n = max(len(cos_mean), 1)
            result.optimisation.append({
                "optimisation_model": run.label, "alpha": run.config.alpha,
                "grad_cosine_mean": sum(cos_mean) / n, "grad_cosine_std": sum(cos_std) / n,
                **score_images(eval_model, _generate(prior, z), base_targets),
            })
            tick()
            tick()
        # Stage 3: each model's optimised candidates, re-selected by every model
        for opt_run, z in zip(runs, optimised, strict=True):
            for sel_run in runs:
                images, kept, _, _ = select_results(
                    sel_run.model, prior, z, base_targets, classes, config, torch.Generator().manual_seed(config.seed + 2)
                )
                result.selection.append({"optimisation_model": opt_run.label, "selection_model": sel_run.label,
                                         "alpha": sel_run.config.alpha, **score_images(eval_model, images, kept)})
                tick()
        for _ in runs:
            tick()
    return result
