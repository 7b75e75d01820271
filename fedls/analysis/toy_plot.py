"""Fig. 1 / Fig. 8 of Struppek et al. (2024) for the toy example: confidence background, decision
regions, training data and the attack paths, one panel per α."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fedls.analysis.toy import ToyResult, confidence_grid  # noqa: E402

CLASS_COLORS = np.array([[0.12, 0.47, 0.71], [0.17, 0.63, 0.17], [1.0, 0.5, 0.05]])
MARKERS = ("s", "o", "p")


def toy_figure(result: ToyResult, seed: int, resolution: int = 200) -> Figure:
    """Two rows (stop at 95% / fixed steps) × one column per α, for one seed's models."""
    models = result.models
    config = models.config
    alphas = list(config.alphas)
    indices = [models.index(seed, a) for a in alphas]
    px, py = models.data[seed]
    pts = np.concatenate([px.numpy(), np.array([config.start_point])])
    pad = 1.5
    extent = (pts[:, 0].min() - pad, pts[:, 0].max() + pad, pts[:, 1].min() - pad, pts[:, 1].max() + pad)
    probs, _ = confidence_grid(models, indices, extent, resolution)
    fig, axes = plt.subplots(2, len(alphas), figsize=(3.4 * len(alphas), 6.6), squeeze=False)
    k = config.num_classes
    colors = CLASS_COLORS[np.arange(k) % len(CLASS_COLORS)]
    for col, (alpha, idx) in enumerate(zip(alphas, indices, strict=True)):
        p = probs[col].numpy()
        conf = p.max(-1)
        pred = p.argmax(-1)
        # colour = predicted class, faded toward white where the model is unsure
        strength = ((conf - 1 / k) / (1 - 1 / k))[..., None]
        image = 1 - strength * (1 - colors[pred])
        for row, (attack, label) in enumerate(((result.stopped, "stop at 95%"), (result.fixed, f"{config.fixed_steps} steps"))):
            ax = axes[row, col]
            ax.imshow(image, origin="lower", extent=extent, aspect="auto", alpha=0.85)
            ax.contour(np.linspace(*extent[:2], resolution), np.linspace(*extent[2:], resolution), p[..., config.target_class],
                       levels=[config.confidence], colors="k", linewidths=0.6, linestyles="--")
            for c in range(k):
                sel = py.numpy() == c
                ax.scatter(px[sel, 0], px[sel, 1], s=9, marker=MARKERS[c % 3], color=colors[c], edgecolors="k", linewidths=0.3)
            path = attack.paths[idx].numpy()
            ax.plot(path[:, 0], path[:, 1], color="gold", linewidth=2)
            ax.scatter(*path[0], marker="x", color="k", s=30, zorder=5)
            ax.scatter(*path[-1], marker="*", color="gold", edgecolors="k", s=90, zorder=5)
            ax.set_title(f"α={alpha:g}, {label}: {attack.steps[idx]} steps, d={attack.distance[idx]:.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"toy example (seed {seed}); dashed: {config.confidence:.0%} target-confidence contour", fontsize=9)
    fig.tight_layout()
    return fig


def summary_figure(result: ToyResult) -> Figure:
    """Steps and distance to the target class per α over all seeds (mean ± std, dots = seeds)."""
    alphas = list(result.models.config.alphas)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, key, title in zip(
        axes,
        ("steps", "distance", "fixed_steps_distance"),
        ("attack steps to 95%", "distance to target data (stop at 95%)", "distance (fixed steps)"),
        strict=True,
    ):
        values = result.per_alpha(key)
        for i, a in enumerate(alphas):
            v = np.array(values[a])
            ax.scatter(np.full(len(v), i), v, s=12, color="gray")
            ax.errorbar(i, v.mean(), yerr=v.std(), fmt="o", color="C3", capsize=4)
        ax.set_xticks(range(len(alphas)), [f"α={a:g}" for a in alphas])
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path, dpi: int = 90) -> None:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
