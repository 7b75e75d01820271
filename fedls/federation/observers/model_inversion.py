"""The curious server's model-inversion observer: attack (PPA) + scorer (judge) on the global model.

Struppek et al. 2024 §4.4 on the FedAvg global model. The attack (:mod:`fedls.attacks.model`)
gets the target, the prior trained on the server's public data, the number of classes and its
options; the scorer (:mod:`fedls.metrics.inversion` with :mod:`fedls.metrics.judge`) gets the
attack images plus the ground truth (private train/test tensors). This module composes them
(:class:`ModelInversion`, shared with the stand-alone command in :mod:`fedls.studies`) and
declares the ``[model_attack]`` table, which nests the attacker's and the scorer's sections.

Logged per attacked round (round k, 2k, ... and the last round):

* ``leakage/model_inversion/{acc1, acc1_low, acc1_high, baseline_acc1, lift, judge_accuracy}``,
* ``diagnostics/model_inversion/...`` for everything else (Acc@5, ξ, δ_eval, num_images,
  acc1_reliable, prior quality, attack-side scores, wall time),
* a figure ``leakage/model_inversion/attack_vs_real``: per class, attack images next to real
  private images, with class names and the judge's verdict.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field

from fedls.attacks.model.config import PPAOptions, PriorOptions
from fedls.attacks.model.ppa import AttackResult, StageProgress, run_ppa
from fedls.attacks.model.prior import Prior, load_or_train_prior, sample_prior
from fedls.data import DatasetSplits, dataset_tensors, to_unit_range
from fedls.federation.observers.base import RoundLog, RoundObserver
from fedls.metrics.inversion import prior_quality, score_inversion
from fedls.metrics.judge import Judge, JudgeOptions, accuracy, load_or_train_judge
from fedls.schema import Options
from fedls.training.seeding import derive_seed

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

LEAKAGE = "leakage/model_inversion/"
DIAGNOSTICS = "diagnostics/model_inversion/"
HEADLINE = ("acc1", "acc1_low", "acc1_high", "baseline_acc1", "lift", "judge_accuracy")
TaskProgress = Callable[[str, int, int], None]  # (task, done, total)


class ModelAttackOptions(Options):
    """The ``[model_attack]`` table: schedule and cache at the top, then the nested sections
    ``[model_attack.prior]``, ``[model_attack.ppa]`` (the attacker's) and
    ``[model_attack.evaluation]`` (the scorer's)."""

    enabled: bool = Field(True, description="a switch only: a present table already turns the attack on")
    every: int = Field(5, ge=1, description="attack the global model every k rounds (and at the last round)")
    cache_dir: str | None = Field(None, description="cache of priors and judges [default: $FEDLS_CACHE or ~/.cache/fedls]")
    grid_classes: int = Field(10, ge=1, le=1000, description="classes shown in the attack-vs-real figure")
    grid_images: int = Field(5, ge=1, le=50, description="images per side and class in the figure")
    prior: PriorOptions = Field(default_factory=PriorOptions)
    ppa: PPAOptions = Field(default_factory=PPAOptions)
    evaluation: JudgeOptions = Field(default_factory=JudgeOptions)


def parse_model_attack(values: Mapping[str, Any] | None, num_classes: int | None = None) -> ModelAttackOptions:
    """Validate a ``model_attack`` table (one-line :class:`ConfigError` on any problem); with
    ``num_classes`` also refuse attacked classes the private task does not have, so that
    ``--mia-classes 99`` fails before a run starts."""
    options = ModelAttackOptions.parse(values, "model_attack")
    if num_classes is not None:
        options.ppa.check_classes(num_classes)
    return options


class ModelInversion:
    """One dataset's model inversion: the prior (public data), the judge (private data), the
    attack and its scoring. Prior and judge are built or loaded from the cache on first need.

    Private data enters only :meth:`score`, :meth:`target_accuracy` and :meth:`figure`; the
    attack call gets the target, the prior, the number of classes and the PPA options."""

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
        self._judge: Judge | None = None
        self._prior_quality: dict[str, float] | None = None
        self._train = dataset_tensors(splits.train)  # ground truth: scorer side only
        self._test = dataset_tensors(splits.test)

    def _report(self, task: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        return None if progress is None else (lambda done, total: progress(task, done, total))

    @property
    def prior(self) -> Prior:
        if self._prior is None:
            self._prior = load_or_train_prior(
                self.splits.name, self.splits.public, self.splits.image_shape, self.options.prior,
                self.options.cache_dir, self.device, self._report("prior"),
            )
        return self._prior

    @property
    def judge(self) -> Judge:
        if self._judge is None:
            self._judge = load_or_train_judge(
                self.splits.name, self.splits.train, self.splits.test, self.splits.image_shape, self.splits.num_classes,
                self.target_model, self.options.evaluation, self.options.cache_dir, self.device, self._report("judge"),
            )
        return self._judge

    def prior_samples(self, n: int = 64) -> torch.Tensor:
        return sample_prior(self.prior, n, seed=self.options.prior.seed, device=self.device)

    def prior_quality(self) -> dict[str, float]:
        """The judge's quality proxy of the prior on 500 samples."""
        if self._prior_quality is None:
            self._prior_quality = prior_quality(self.prior_samples(500), self.judge.model, self.device)
        return self._prior_quality

    def attack(self, target: torch.nn.Module, seed: int, progress: StageProgress | None = None) -> tuple[AttackResult, float]:
        """PPA on ``target`` (the server's view: target, prior, number of classes, options)."""
        ppa = self.options.ppa.replace("model_attack.ppa", seed=seed)
        started = time.perf_counter()
        result = run_ppa(target, self.prior, self.splits.num_classes, ppa, self.device, progress)
        return result, time.perf_counter() - started

    def target_accuracy(self, target: torch.nn.Module) -> float:
        return accuracy(target, *self._test, self.device)

    def score(self, result: AttackResult, target_accuracy: float, extraction: bool = True) -> dict[str, float]:
        """The scorer: judge-based metrics with controls, the prior's quality and attack-side numbers."""
        metrics = result.summary()
        metrics.update(score_inversion(
            result.images, result.targets, result.baseline_images, result.baseline_targets, self.judge, target_accuracy,
            self._train, self._test, self.options.evaluation, self.device, extraction=extraction,
        ))
        metrics.update({f"prior_{k}": v for k, v in self.prior_quality().items()})
        return metrics

    def run(self, target: torch.nn.Module, seed: int, progress: StageProgress | None = None,
            extraction: bool = True) -> tuple[AttackResult, dict[str, float]]:
        """Attack and score ``target``; metrics include ``attack_seconds``."""
        _ = self.prior, self.judge  # build both before the attack's clock starts
        result, seconds = self.attack(copy.deepcopy(target), seed, progress)
        metrics = self.score(result, self.target_accuracy(target), extraction)
        metrics["attack_seconds"] = seconds
        return result, metrics

    @torch.no_grad()
    def figure(self, result: AttackResult, title: str = "") -> Figure:
        """Attack images vs real private images, one row per class (labelled with its name and
        the judge's verdict), upscaled with nearest-neighbour pixels so 8×8 digits stay legible."""
        from matplotlib.figure import Figure

        per_side = self.options.grid_images
        classes = result.classes[: self.options.grid_classes]
        predicted = self.judge.model(result.images.to(self.device)).argmax(-1).cpu()
        x, y = self._train
        fig = Figure(figsize=(2 * per_side * 0.75 + 1.6, 0.8 * len(classes) + 0.9), dpi=110)
        axes = fig.subplots(len(classes), 2, squeeze=False)
        names = self.splits.class_names or [str(c) for c in range(self.splits.num_classes)]
        for row, c in enumerate(classes):
            mask = result.targets == c
            fake, verdict = result.images[mask][:per_side], predicted[mask][:per_side]
            real = x[y == c][:per_side]
            hits = int((predicted[mask] == c).sum())
            for col, (images, label) in enumerate(((fake, "attack images"), (real, "real private images"))):
                ax = axes[row, col]
                ax.imshow(image_strip(images, per_side), cmap="gray" if images.shape[1] == 1 else None,
                          interpolation="nearest", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(label, fontsize=9)
            axes[row, 0].set_ylabel(f"{names[c]}\njudge {hits}/{int(mask.sum())}", fontsize=8, rotation=0,
                                    ha="right", va="center")
            wrong = [names[int(v)] for v in verdict if int(v) != c]
            if wrong:
                axes[row, 0].set_xlabel("judged as " + ", ".join(wrong[:per_side]), fontsize=6)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return fig


def image_strip(images: torch.Tensor, slots: int) -> np.ndarray:
    """``slots`` images side by side (missing ones blank), [H, W(, C)] in [0, 1] with 1-px gaps."""
    c, h, w = images.shape[1:] if len(images) else (1, 1, 1)
    canvas = torch.full((c, h, slots * (w + 1) - 1), 0.5)  # grey gaps: neither ink nor background
    for i, image in enumerate(to_unit_range(images[:slots])):
        canvas[:, :, i * (w + 1) : i * (w + 1) + w] = image
    array = canvas.permute(1, 2, 0).numpy()
    return array[:, :, 0] if c == 1 else array


class ModelInversionObserver(RoundObserver):
    """Attacks the aggregated model at rounds k, 2k, ... and always at the final round."""

    def __init__(self, options: ModelAttackOptions, splits: DatasetSplits, target_model: str, rounds: int,
                 run_seed: int, device: torch.device | str = "cpu") -> None:
        self.options = options
        self.final_round = rounds
        # the same attack seed every round, so rounds differ only by the model attacked
        self.seed = derive_seed(run_seed, options.ppa.seed)
        self.inversion = ModelInversion(options, splits, target_model, device)
        self._logged_prior = False

    def should_attack(self, server_round: int) -> bool:
        return server_round > 0 and (server_round % self.options.every == 0 or server_round == self.final_round)

    def on_global_model(self, server_round: int, model: torch.nn.Module, log: RoundLog) -> None:
        if not self.should_attack(server_round):
            return
        if not self._logged_prior:  # a noisy prior can fool the judge: look at it
            log.figure(f"{DIAGNOSTICS}prior_samples", prior_figure(self.inversion.prior_samples(32), self.inversion.splits.name))
            self._logged_prior = True
        result, metrics = self.inversion.run(model, self.seed)
        headline, diagnostics = split_metrics(metrics)
        log.scalars(headline)
        log.scalars(diagnostics)
        log.figure(f"{LEAKAGE}attack_vs_real", self.inversion.figure(result, round_title(f"round {server_round}", metrics)))
        logger_line(server_round, metrics)


def round_title(label: str, metrics: Mapping[str, float]) -> str:
    """One line for a figure: Acc@1 with interval and count, the prior baseline, the judge."""
    return (f"{label}: Acc@1 {metrics['acc1']:.2f} [{metrics['acc1_low']:.2f}, {metrics['acc1_high']:.2f}] "
            f"of {int(metrics['num_images'])}, prior baseline {metrics['baseline_acc1']:.2f}, "
            f"judge {metrics['judge_accuracy']:.2f}")


def logger_line(server_round: int, metrics: Mapping[str, float]) -> None:
    log.info("round %d model inversion: acc1 %.3f [%.3f, %.3f] (n=%d), baseline %.3f, lift %+.3f, judge %.3f%s (%.1f s)",
             server_round, metrics["acc1"], metrics["acc1_low"], metrics["acc1_high"], int(metrics["num_images"]),
             metrics["baseline_acc1"], metrics["lift"], metrics["judge_accuracy"],
             "" if metrics["acc1_reliable"] else " (judge too weak: Acc@1 unreliable)", metrics["attack_seconds"])


def split_metrics(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Headline numbers under ``leakage/model_inversion/``, the rest under ``diagnostics/...``."""
    headline = {f"{LEAKAGE}{k}": float(metrics[k]) for k in HEADLINE if k in metrics}
    rest = {f"{DIAGNOSTICS}{k}": float(v) for k, v in metrics.items() if k not in HEADLINE and k != "attack_seconds"}
    if "attack_seconds" in metrics:  # wall time is not a leakage number: it goes with the other timings
        rest["time/attack_model_s"] = float(metrics["attack_seconds"])
    return headline, rest


def prior_figure(samples: torch.Tensor, dataset: str) -> Figure:
    """A labelled grid of prior samples (the prior is trained on the server's public data)."""
    from matplotlib.figure import Figure

    cols = 8
    rows = (len(samples) + cols - 1) // cols
    fig = Figure(figsize=(cols * 0.7, rows * 0.7 + 0.5), dpi=110)
    ax = fig.subplots()
    strips = [image_strip(samples[r * cols : (r + 1) * cols], cols) for r in range(rows)]
    gap = np.ones((1, *strips[0].shape[1:]))
    ax.imshow(np.concatenate([s for strip in strips for s in (strip, gap)][:-1]), cmap="gray" if samples.shape[1] == 1 else None,
              interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"prior samples ({dataset} public data)", fontsize=9)
    fig.tight_layout()
    return fig


def build_model_inversion_observer(
    table: Mapping[str, Any], splits: DatasetSplits, target_model: str, rounds: int, run_seed: int,
    device: torch.device | str = "cpu",
) -> ModelInversionObserver:
    """What the server calls when the run's ``model_attack`` table is switched on."""
    options = parse_model_attack(table, splits.num_classes)
    return ModelInversionObserver(options, splits, target_model, rounds, run_seed, device)
