"""Figures for :mod:`fedls.analysis.embeddings`: t-SNE panels (Fig. 4), violins (Fig. 5),
and the TensorBoard embedding projector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fedls.analysis.embeddings import EmbeddingAnalysis  # noqa: E402

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def tsne_figure(analyses: Sequence[EmbeddingAnalysis]) -> Figure:
    """One t-SNE panel per model; colours cycle through tab20 (reused above 20 classes, as in Fig. 4)."""
    shown = [(a, a.tsne) for a in analyses if a.tsne is not None]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(3.6 * max(len(shown), 1), 3.6), squeeze=False)
    cmap = plt.get_cmap("tab20" if max((int(a.labels.max()) + 1 for a, _ in shown), default=10) > 10 else "tab10")
    for ax, (a, tsne) in zip(axes[0], shown, strict=False):
        labels = a.labels.numpy()
        ax.scatter(tsne[:, 0], tsne[:, 1], c=[cmap(int(c) % cmap.N) for c in labels], s=5)
        ax.set_title(a.label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("t-SNE of penultimate activations (training samples)", fontsize=9)
    fig.tight_layout()
    return fig


def violin_figure(analyses: Sequence[EmbeddingAnalysis]) -> Figure:
    """Fig. 5 layout: per model, mean intra/inter distances (left) and nearest-neighbour ones (right)."""
    fig, axes = plt.subplots(1, len(analyses), figsize=(3.6 * len(analyses), 3.2), squeeze=False, sharey=True)
    kinds = ("intra", "inter", "nn_intra", "nn_inter")
    names = ("intra", "inter", "NN intra", "NN inter")
    for ax, a in zip(axes[0], analyses, strict=True):
        data = [a.distances[k][np.isfinite(a.distances[k])] for k in kinds]
        parts = ax.violinplot(data, positions=[0, 1, 2.5, 3.5], showmedians=True, widths=0.8)
        for body, color in zip(parts["bodies"], ("C0", "C1", "C0", "C1"), strict=True):
            body.set_facecolor(color)
            body.set_alpha(0.6)
        ax.axvline(1.75, color="gray", linewidth=0.5)
        ax.set_xticks([0, 1, 2.5, 3.5], names, fontsize=7)
        ax.set_title(a.label, fontsize=8)
    axes[0, 0].set_ylabel("max-scaled L2 distance")
    fig.tight_layout()
    return fig


def add_projector(writer: SummaryWriter, analysis: EmbeddingAnalysis, class_names: Sequence[str], global_step: int = 0) -> None:
    """TensorBoard projector: features with class metadata and the images as sprites."""
    images = analysis.images.float()
    if images.min() < 0:  # fedls images live in [-1, 1]; sprites want [0, 1]
        images = (images.clamp(-1, 1) + 1) / 2
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    labels = analysis.labels.tolist()
    metadata = [class_names[c] if c < len(class_names) else str(c) for c in labels]
    tag = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in analysis.label)
    writer.add_embedding(analysis.features, metadata=metadata, label_img=images, global_step=global_step, tag=tag)


def save(fig: Figure, path: Path, dpi: int = 90) -> None:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


__all__ = ["add_projector", "save", "tsne_figure", "violin_figure"]
