"""Gradient leakage per round: the attack on client updates composed with its scorer.

Headline tags (``leakage/gradient/...``): ``label_count_accuracy`` (share of attacked clients
whose per-class label counts the server recovered exactly), ``label_count_mae`` (mean absolute
count error per class) with ``label_count_mae_chance`` (the even-spread guess), ``alpha_error``.
Malicious probe modes add the probe label success and reconstruction PSNR against the iDLG
hard-label and mean-image baselines. Per-client values go to ``per_client`` (metrics.jsonl).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from fedls.attacks.gradient.attack import GradientAttack, GradientAttackResult, ProbeLeak
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.config import RunConfig
from fedls.data import DatasetSplits, ImageDataset
from fedls.federation.observers.base import RoundLog, RoundObserver
from fedls.metrics import gradient_leakage as scoring
from fedls.metrics.images import image_psnr, to_unit
from fedls.models.base import Classifier
from fedls.threat_model import GroundTruth, ProbeRequest, ServerView

log = logging.getLogger(__name__)
LEAK = "leakage/gradient/"
DIAG = "diagnostics/gradient/"
ModelFactory = Callable[[], Classifier]


class GradientLeakageObserver(RoundObserver):
    def __init__(
        self, attack: GradientAttack, scoring_model: Classifier, mean_image: torch.Tensor, class_names: Sequence[str]
    ) -> None:
        self.attack = attack
        self.scoring_model = scoring_model  # a separate copy: scorers never touch the attack's model
        self.mean_image = mean_image
        self.class_names = list(class_names)

    def probe_requests(self, server_round: int, client_ids: Sequence[int]) -> dict[int, ProbeRequest]:
        return self.attack.probe_requests(server_round, client_ids)

    def on_client_updates(self, view: ServerView, truth: Mapping[int, GroundTruth], log_: RoundLog) -> None:
        result = self.attack.run(view)  # the attack sees the view only
        if result is None:
            return
        log_.scalars({"time/attack_gradient_s": result.seconds})
        self._score_counts(result, truth, log_)
        if result.probe_leaks:
            self._score_probes(result.probe_leaks, view, truth, log_)

    def _score_counts(self, result: GradientAttackResult, truth: Mapping[int, GroundTruth], log_: RoundLog) -> None:
        scored = {leak.client_id: (leak, scoring.score_counts(leak.counts, leak.alpha, truth[leak.client_id]))
                  for leak in result.label_leaks if leak.client_id in truth}
        if not result.label_leaks:
            return
        log_.scalars({f"{DIAG}claimed_success_rate": float(np.mean([leak.success for leak in result.label_leaks]))})
        if not scored:
            return
        scores = [s for _, s in scored.values()]
        log_.scalars(
            {
                f"{LEAK}label_count_accuracy": float(np.mean([s["count_exact"] for s in scores])),
                f"{LEAK}label_count_mae": float(np.mean([s["count_mae"] for s in scores])),
                f"{LEAK}label_count_mae_chance": float(np.mean([scoring.chance_count_mae(truth[c]) for c in scored])),
                f"{LEAK}alpha_error": float(np.mean([s["alpha_error"] for s in scores])),
                f"{DIAG}label_set_accuracy": float(np.mean([s["label_set_exact"] for s in scores])),
            }
        )
        log_.per_client("gradient/count_exact", {c: s["count_exact"] for c, (_, s) in scored.items()})
        log_.per_client("gradient/count_mae", {c: s["count_mae"] for c, (_, s) in scored.items()})
        log_.per_client("gradient/alpha_hat", {c: leak.alpha for c, (leak, _) in scored.items()})

    def _score_probes(self, leaks: list[ProbeLeak], view: ServerView, truth: Mapping[int, GroundTruth], log_: RoundLog) -> None:
        self.scoring_model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in view.global_weights.items()})
        rows = []
        for leak in leaks:
            t = truth.get(leak.client_id)
            if t is None:
                continue
            row = scoring.score_probe_label(leak.recovery.label, leak.recovery.alpha, t, leak.recovery.mixup_coefficient)
            cosine = scoring.feature_cosine(leak.recovery.features, self.scoring_model, t)
            if cosine is not None:
                row["feature_cosine"] = cosine
            if leak.soft is not None and leak.hard is not None:
                row.update(scoring.score_reconstruction(leak.soft.image, leak.hard.image, t, self.mean_image))
            rows.append(row)
        if not rows:
            return
        means = {key: float(np.mean([r[key] for r in rows if key in r])) for key in sorted({k for r in rows for k in r})}
        headline = {"label_success": "probe_label_success", "recon_psnr": "recon_psnr", "idlg_psnr": "recon_psnr_hard_label",
                    "mean_image_psnr": "recon_psnr_mean_image"}
        log_.scalars({(f"{LEAK}{headline[k]}" if k in headline else f"{DIAG}probe_{k}"): v for k, v in means.items()})
        shown = [leak for leak in leaks if leak.soft is not None and leak.hard is not None and leak.client_id in truth][
            : self.attack.options.grid
        ]
        if shown:
            log_.figure(
                "leakage/gradient/reconstructions", reconstruction_figure(shown, truth, self.class_names, self.mean_image)
            )


def reconstruction_figure(
    leaks: list[ProbeLeak], truth: Mapping[int, GroundTruth], class_names: Sequence[str], mean_image: torch.Tensor
) -> Figure:
    """Rows: original / soft-label reconstruction / hard-label (iDLG) baseline, one column per
    attacked client, PSNR under each reconstruction."""
    rows = ("original", "soft-label reconstruction", "hard-label baseline (iDLG)")
    fig, axes = plt.subplots(3, len(leaks), figsize=(2.2 * len(leaks) + 1.2, 7), squeeze=False)
    for j, leak in enumerate(leaks):
        t = truth[leak.client_id]
        assert t.images is not None and t.labels is not None and leak.soft is not None and leak.hard is not None
        original = t.images[:1]
        images = (original, leak.soft.image, leak.hard.image)
        for i, image in enumerate(images):
            ax = axes[i][j]
            pixels = to_unit(image)[0]
            ax.imshow(pixels.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if pixels.shape[0] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                label = int(t.labels[0])
                ax.set_title(
                    f"client {leak.client_id}\nclass {class_names[label] if label < len(class_names) else label}", fontsize=9
                )
            else:
                ax.set_xlabel(f"PSNR {float(image_psnr(image, original)[0]):.1f} dB", fontsize=9)
            if j == 0:
                ax.set_ylabel(rows[i], fontsize=9)
    fig.suptitle("Gradient inversion of probed client updates", fontsize=11)
    fig.tight_layout()
    return fig


def mean_public_image(public: ImageDataset, limit: int = 512) -> torch.Tensor:
    """What the server could answer without any update: the mean of its public images."""
    return torch.stack([public[i][0] for i in range(min(len(public), limit))]).mean(0, keepdim=True)


def build_gradient_observer(
    options: GradientAttackOptions, config: RunConfig, splits: DatasetSplits, model_factory: ModelFactory
) -> GradientLeakageObserver:
    """The attack runs on CPU: the analytic part is cheap and the reconstruction models are small."""
    attack = GradientAttack(options, model_factory(), splits.image_shape)
    mean_image = mean_public_image(splits.public)
    names = splits.class_names or [str(c) for c in range(splits.num_classes)]
    return GradientLeakageObserver(attack, model_factory(), mean_image, names)

