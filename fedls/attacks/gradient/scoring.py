"""Scoring the gradient attack against ground truth: metrics only, never the attack itself.

The reference label of a probe is its soft target; for a batch probe it is the batch mean of
the targets (what a single-label recovery from a mean gradient can at best find).
"""

from __future__ import annotations

import numpy as np
import torch

from fedls.attacks.gradient.attack import ClientAttack
from fedls.metrics.images import image_metrics
from strategies.observers import GroundTruth

SUCCESS_TOL = 1e-3  # max |ŷ − y| below which a recovered label counts as exact


def score_attack(attack: ClientAttack, truth: GroundTruth, features: np.ndarray | None = None) -> dict[str, float]:
    """Label, coefficient, feature and image metrics of one attacked client.

    ``features``: the true head input (computed by the caller from the true images), for the
    feature cosine similarity.
    """
    rec = attack.recovery
    reference = truth.targets.double().mean(0).numpy()
    error = float(np.abs(rec.label - reference).max())
    scores = {
        "label_success": float(error < SUCCESS_TOL),
        "claimed_success": float(rec.success),
        "label_max_error": error,
        "label_top1": float(rec.top1 == int(np.argmax(reference))),
    }
    if "alpha" in truth.extra:
        scores["alpha_error"] = abs(rec.alpha - float(truth.extra["alpha"]))
    if rec.mixup_coefficient is not None and "mixup_coefficient" in truth.extra:
        scores["mixup_error"] = abs(rec.mixup_coefficient - float(truth.extra["mixup_coefficient"]))
    if features is not None:
        a, b = rec.features, np.asarray(features, dtype=np.float64).reshape(-1)
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        scores["feature_cosine"] = float(a @ b / denom) if denom > 0 else 0.0
    if attack.soft is not None and attack.hard is not None and truth.images.shape[0] == 1:
        for prefix, result in (("recon", attack.soft), ("idlg", attack.hard)):
            for key, value in image_metrics(result.image, truth.images).items():
                scores[f"{prefix}_{key}"] = value
    return scores


def true_features(model: torch.nn.Module, truth: GroundTruth) -> np.ndarray:
    """Mean head input of the probe's true images (metrics only)."""
    with torch.no_grad():
        return model.features(truth.images.float()).double().mean(0).numpy()  # type: ignore[operator]


def comparison_grid(attacks: list[ClientAttack], truth: dict[int, GroundTruth]) -> torch.Tensor | None:
    """Rows of originals, soft-label and iDLG reconstructions (one column per client)."""
    shown = [a for a in attacks if a.soft is not None and a.hard is not None and a.node_id in truth]
    if not shown:
        return None
    originals = torch.cat([truth[a.node_id].images[:1] for a in shown])
    soft = torch.cat([a.soft.image for a in shown])  # type: ignore[union-attr]
    hard = torch.cat([a.hard.image for a in shown])  # type: ignore[union-attr]
    return torch.cat([originals, soft, hard])
