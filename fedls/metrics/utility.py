"""Utility of a classifier on held-out data: accuracy, loss, calibration, confidence, logit size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_calibration_error


@torch.no_grad()
def predict(
    model: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of a whole dataset, in order."""
    model.to(device).eval()
    logits, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits.append(model(x.to(device)).float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(logits), torch.cat(labels)


def utility_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> dict[str, float]:
    """Accuracy, hard-label cross-entropy, ECE (``n_bins`` equal-width bins, via torchmetrics),
    mean top-1 confidence and mean logit L2 norm.

    The last two are logged because negative smoothing's loss is unbounded below: logits can
    grow without limit and saturate the softmax (the README's "Lessons from small-scale trials").
    """
    probs = F.softmax(logits, dim=-1)
    num_classes = logits.shape[-1]
    return {
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "loss": float(F.cross_entropy(logits, labels)),
        "ece": float(multiclass_calibration_error(probs, labels, num_classes=num_classes, n_bins=n_bins, norm="l1")),
        "mean_confidence": float(probs.max(-1).values.mean()),
        "mean_logit_norm": float(logits.norm(dim=-1).mean()),
    }


def evaluate(model: torch.nn.Module, dataset: Dataset, device: torch.device) -> dict[str, float]:
    logits, labels = predict(model, dataset, device)
    return utility_metrics(logits, labels)
