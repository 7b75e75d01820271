"""The utility–privacy plot: test accuracy against attack success, one labelled point per setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (("attack_acc1", "Attack Acc@1 (model inversion)"), ("xi_train", "ξ_train (kNN-distance match to training data)"))


def utility_privacy_plot(rows: list[dict[str, Any]], baseline: str, path: Path) -> Path:
    """Two panels (accuracy vs Acc@1, accuracy vs ξ_train). Settings without the attack metric
    are listed in the panel instead of being placed at an invented position."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        missing = []
        for row in rows:
            x, y = row.get(key), row.get("test_acc")
            if x is None or y is None:
                missing.append(row["setting"])
                continue
            marker = "*" if row["setting"] == baseline else "o"
            ax.scatter([100 * x], [100 * y], marker=marker, s=120 if marker == "*" else 50, zorder=3)
            ax.annotate(row["setting"], (100 * x, 100 * y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(f"{label} [%]  ← better defense")
        ax.set_ylabel("Test accuracy [%]  ↑ better utility")
        ax.grid(alpha=0.3)
        if missing:
            ax.text(0.02, 0.02, "not measured: " + ", ".join(missing), transform=ax.transAxes, fontsize=7, color="gray", va="bottom")
    fig.suptitle(f"Utility vs privacy (★ = baseline {baseline})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
