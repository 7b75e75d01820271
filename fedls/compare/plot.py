"""The utility–privacy plot: test accuracy against attack success, one labelled point per setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (
    ("attack_acc1", "Attack Acc@1 (model inversion)"),
    ("xi_train", "ξ_train (attack-image surrogate on real data)"),
)


def utility_privacy_plot(rows: list[dict[str, Any]], baseline: str, path: Path) -> Path:
    """Two panels (accuracy vs Acc@1, accuracy vs ξ_train). Each setting has one colour and a
    legend entry (points of similar settings sit close together, so text labels would overlap).
    Settings without the attack metric are listed in the panel, never placed at an invented
    position."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        missing = []
        for i, row in enumerate(rows):
            x, y = row.get(key), row.get("test_acc")
            if x is None or y is None:
                missing.append(row["setting"])
                continue
            marker = "*" if row["setting"] == baseline else "o"
            ax.scatter([100 * x], [100 * y], marker=marker, s=160 if marker == "*" else 60, zorder=3,
                       color=colours(i % 10), edgecolor="black", linewidth=0.5, label=row["setting"])
        ax.set_xlabel(f"{label} [%]  ← better defense")
        ax.set_ylabel("Test accuracy [%]  ↑ better utility")
        ax.grid(alpha=0.3)
        if missing:
            ax.text(0.02, 0.02, "not measured: " + ", ".join(missing), transform=ax.transAxes, fontsize=7, color="gray", va="bottom")
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[0]))
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=9, frameon=False)
    fig.suptitle(f"Utility vs privacy (★ = baseline {baseline})")
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
