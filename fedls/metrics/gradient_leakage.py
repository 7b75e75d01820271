"""Scoring the attack on client updates against ground truth (the only place both meet).

The scorer takes plain arrays — what the attack claims and what the client really did — so
it never imports an attack. Label counts: exact when every class count matches; the mean
absolute count error is per class. Probes: the reference label of a batch probe is the batch
mean of its soft targets (what a single-label recovery from a mean gradient can at best find).
"""

from __future__ import annotations

import numpy as np
import torch

from fedls.metrics.images import image_metrics
from fedls.threat_model import GroundTruth

SUCCESS_TOL = 1e-3  # max |ŷ − y| below which a recovered soft label counts as exact


def score_counts(counts: np.ndarray, alpha_hat: float, truth: GroundTruth) -> dict[str, float]:
    """One client's batch label recovery against the counts it trained on."""
    true = np.asarray(truth.label_counts, dtype=np.int64)
    guess = np.asarray(counts, dtype=np.int64)
    if guess.shape != true.shape:  # a guess over the wrong classes gets nothing right
        return {"count_exact": 0.0, "count_mae": float(np.abs(true).sum()), "label_set_exact": 0.0,
                "alpha_error": float(abs(alpha_hat - truth.alpha))}
    return {
        "count_exact": float(np.array_equal(guess, true)),
        "count_mae": float(np.abs(guess - true).mean()),
        "label_set_exact": float(np.array_equal(guess > 0, true > 0)),
        "alpha_error": float(abs(alpha_hat - truth.alpha)),
    }


def chance_count_mae(truth: GroundTruth) -> float:
    """The count error of the attacker's best guess without the update: an even spread of the
    client's samples over the classes (the baseline the recovered counts must beat)."""
    true = np.asarray(truth.label_counts, dtype=np.float64)
    return float(np.abs(true - true.sum() / len(true)).mean())


def score_probe_label(
    label: np.ndarray, alpha_hat: float, truth: GroundTruth, mixup_coefficient: float | None = None
) -> dict[str, float]:
    """A probe's recovered soft label against its true (batch-mean) soft target."""
    if truth.targets is None:
        return {}
    reference = truth.targets.double().mean(0).numpy()
    error = float(np.abs(np.asarray(label) - reference).max())
    scores = {
        "label_success": float(error < SUCCESS_TOL),
        "label_max_error": error,
        "label_top1": float(int(np.argmax(label)) == int(np.argmax(reference))),
        "alpha_error": abs(alpha_hat - truth.alpha),
    }
    if mixup_coefficient is not None and "mixup_coefficient" in truth.extra:
        scores["mixup_error"] = abs(mixup_coefficient - float(truth.extra["mixup_coefficient"]))
    return scores


def feature_cosine(recovered: np.ndarray, model: torch.nn.Module, truth: GroundTruth) -> float | None:
    """Cosine between the recovered head input and the true one (mean over the probe's images)."""
    features = getattr(model, "features", None)
    if truth.images is None or features is None:
        return None
    with torch.no_grad():
        true = features(truth.images.float()).double().mean(0).numpy()
    a, b = np.asarray(recovered, dtype=np.float64).reshape(-1), true.reshape(-1)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else 0.0


def score_reconstruction(
    soft: torch.Tensor, hard: torch.Tensor, truth: GroundTruth, mean_image: torch.Tensor
) -> dict[str, float]:
    """PSNR/SSIM of the soft-label reconstruction, the iDLG hard-label baseline, and the trivial
    answer "the mean public image" (a reconstruction must beat both to mean anything)."""
    if truth.images is None or truth.images.shape[0] != 1:
        return {}
    original = truth.images[:1]
    scores: dict[str, float] = {}
    for name, image in (("recon", soft), ("idlg", hard), ("mean_image", mean_image.reshape(original.shape))):
        for key, value in image_metrics(image, original).items():
            scores[f"{name}_{key}"] = value
    return scores
