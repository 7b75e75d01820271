"""Embedding-space geometry of a trained model (Struppek et al. 2024, §4.3, Fig. 4 and Fig. 5).

Penultimate-layer activations (``Classifier.features``) of training samples are compared
by L2 distance, scaled by the largest pairwise distance of that model so that models with
very different feature norms (negative LS inflates them) can be compared. Per sample:

* ``intra``: mean distance to the other samples of its class;
* ``inter``: mean distance to the samples of all other classes;
* ``nn_intra`` / ``nn_inter``: distance to the nearest sample of its own / another class.

Positive LS (Fig. 5b) shrinks ``intra`` relative to ``inter``; negative LS (Fig. 5c) brings
``nn_inter`` close to ``inter`` — nearest neighbours from other classes, i.e. clusters with
mixed labels. ``nn_other_class_fraction`` counts how often the nearest neighbour belongs to
another class.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fedls.errors import ConfigError
from fedls.models.base import Classifier

log = logging.getLogger(__name__)

DISTANCE_KINDS = ("intra", "inter", "nn_intra", "nn_inter")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which samples enter the analysis and how t-SNE is run."""

    max_per_class: int = 100  # samples per class (first ones of the training split)
    max_classes: int = 100  # Fig. 4 shows 100 classes
    tsne: bool = True
    perplexity: float = 30.0
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.max_per_class < 2:
            raise ConfigError("max-per-class must be >= 2 (intra-class distances need two samples)")
        if self.max_classes < 2:
            raise ConfigError("max-classes must be >= 2 (inter-class distances need two classes)")
        if not self.perplexity > 0:
            raise ConfigError("perplexity must be > 0")
        if self.batch_size < 1:
            raise ConfigError("batch-size must be >= 1")


def select_samples(labels: np.ndarray, max_per_class: int, max_classes: int) -> np.ndarray:
    """Indices of the first ``max_per_class`` samples of each of the first ``max_classes`` classes."""
    chosen: list[int] = []
    for c in sorted(np.unique(labels))[:max_classes]:
        chosen.extend(np.flatnonzero(labels == c)[:max_per_class].tolist())
    return np.asarray(sorted(chosen), dtype=np.int64)


@torch.no_grad()
def penultimate_features(
    model: Classifier, dataset: Dataset, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features, labels, images)`` of every sample of ``dataset`` with the model in eval mode."""
    model.eval()
    feats, labels, images = [], [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        feats.append(model.features(x).flatten(1).float())
        labels.append(torch.as_tensor(y))
        images.append(x)
    return torch.cat(feats), torch.cat(labels), torch.cat(images)


def distance_distributions(features: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample max-scaled L2 distances of the four kinds in :data:`DISTANCE_KINDS`.

    Samples that are alone in their class have no intra-class distance (NaN); classes need
    at least two samples for ``intra``/``nn_intra`` and at least two classes for the rest.
    """
    if features.shape[0] != labels.shape[0]:
        raise ValueError("features and labels differ in length")
    if len(torch.unique(labels)) < 2:
        raise ConfigError("distance statistics need samples from at least two classes")
    d = torch.cdist(features.double(), features.double())
    scale = float(d.max())
    if scale > 0:
        d = d / scale
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    intra_mask = same & ~eye
    inter_mask = ~same
    n_intra = intra_mask.sum(1)
    nan = torch.tensor(float("nan"), dtype=d.dtype)
    intra = torch.where(n_intra > 0, (d * intra_mask).sum(1) / n_intra.clamp(min=1), nan)
    inter = (d * inter_mask).sum(1) / inter_mask.sum(1)
    inf = torch.tensor(float("inf"), dtype=d.dtype)
    nn_intra = torch.where(intra_mask, d, inf).min(1).values
    nn_intra = torch.where(n_intra > 0, nn_intra, nan)
    nn_inter = torch.where(inter_mask, d, inf).min(1).values
    return {"intra": intra.numpy(), "inter": inter.numpy(), "nn_intra": nn_intra.numpy(), "nn_inter": nn_inter.numpy()}


def describe(values: np.ndarray) -> dict[str, float]:
    """Mean, std and the :data:`QUANTILES` of the finite values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), **{f"q{int(q * 100):02d}": float("nan") for q in QUANTILES}}
    out = {"mean": float(v.mean()), "std": float(v.std())}
    out.update({f"q{int(q * 100):02d}": float(np.quantile(v, q)) for q in QUANTILES})
    out["median"] = out["q50"]
    return out


def distance_summary(dists: dict[str, np.ndarray]) -> dict[str, object]:
    """Statistics of every distance kind plus two derived numbers.

    ``inter_over_intra``: mean inter / mean intra (separation; larger = tighter, more
    separated clusters). ``nn_other_class_fraction``: share of samples whose nearest
    neighbour belongs to another class (label inconsistency within clusters).
    """
    summary: dict[str, object] = {kind: describe(dists[kind]) for kind in DISTANCE_KINDS}
    intra = float(np.nanmean(dists["intra"]))
    summary["inter_over_intra"] = float(np.nanmean(dists["inter"])) / intra if intra > 0 else float("nan")
    nn_intra = np.where(np.isfinite(dists["nn_intra"]), dists["nn_intra"], np.inf)
    summary["nn_other_class_fraction"] = float(np.mean(dists["nn_inter"] < nn_intra))
    return summary


def tsne_2d(features: torch.Tensor, config: EmbeddingConfig) -> np.ndarray:
    """Struppek et al. (2024) Fig. 4: a 2-D t-SNE of the features (scikit-learn, PCA init, fixed seed)."""
    from sklearn.manifold import TSNE

    n = features.shape[0]
    if n < 3:
        raise ConfigError("t-SNE needs at least 3 samples; raise --max-per-class")
    perplexity = min(config.perplexity, (n - 1) / 3)  # scikit-learn requires perplexity < n
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=config.seed)
    return tsne.fit_transform(features.numpy().astype(np.float64))


@dataclass
class EmbeddingAnalysis:
    """Everything computed for one model."""

    label: str
    alpha: float
    features: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor
    distances: dict[str, np.ndarray]
    summary: dict[str, object]
    tsne: np.ndarray | None


def analyse_embeddings(
    model: Classifier, dataset: Dataset, labels: np.ndarray, config: EmbeddingConfig, label: str = "model", alpha: float = 0.0
) -> EmbeddingAnalysis:
    """Features of the selected training samples, their distance statistics and t-SNE."""
    from fedls.data.base import ArrayDataset

    idx = select_samples(labels, config.max_per_class, config.max_classes)
    subset = dataset.subset(idx) if isinstance(dataset, ArrayDataset) else torch.utils.data.Subset(dataset, idx.tolist())
    feats, ys, images = penultimate_features(model, subset, config.batch_size)
    dists = distance_distributions(feats, ys)
    summary = distance_summary(dists)
    summary["samples"] = int(len(ys))
    summary["classes"] = int(len(torch.unique(ys)))
    summary["feature_dim"] = int(feats.shape[1])
    summary["mean_feature_norm"] = float(feats.norm(dim=1).mean())
    log.info("%s: %d samples, inter/intra %.3f", label, len(ys), summary["inter_over_intra"])
    points = tsne_2d(feats, config) if config.tsne else None
    return EmbeddingAnalysis(label, alpha, feats, ys, images, dists, summary, points)
