"""The utility–privacy plot: test accuracy against attack success, one labelled point per setting.

Each point is the mean over the setting's complete seeds with 95 % t-interval error bars on
both axes. A setting far from the others (DP-SGD with 40 % accuracy, say) would squash the rest
into a corner, so when the bulk of the points spans less than a third of the full range, the
row gets a second panel zoomed on that bulk (the overview marks the zoomed region).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedls.compare.results import ComparisonStats
from fedls.outputs import atomic_path

PANELS = (
    ("attack_acc1", "Attack Acc@1 (model inversion)"),
    ("xi_train", "ξ_train (attack-image surrogate on real data)"),
)
UTILITY = "test_acc"
# A point is part of the bulk if it lies within 4 robust standard deviations (1.4826·MAD) of
# the median on both axes, and never closer than 5 points: a few points on one level
# (MAD ≈ 0) must not make every other point an outlier.
OUTLIER_MADS = 4.0
OUTLIER_FLOOR = 0.05
ZOOM_RATIO = 3.0

Region = tuple[tuple[float, float], tuple[float, float]]  # ((x_low, x_high), (y_low, y_high))


@dataclass(frozen=True)
class Point:
    name: str
    x: float
    y: float
    xerr: float | None  # half-width of the 95 % interval
    yerr: float | None
    n: int
    baseline: bool
    colour: Any


def _half_width(summary: Any) -> float | None:
    if summary is None or summary.ci_high is None:
        return None
    return (summary.ci_high - summary.ci_low) / 2


def _bar(value: float, half: float | None) -> list[list[float]] | None:
    """Error bar (below, above) in percent, cut at 0 and 100 %: every plotted metric is a
    proportion, and a t-interval over two or three seeds can reach past either end."""
    if half is None:
        return None
    return [[100 * (value - max(0.0, value - half))], [100 * (min(1.0, value + half) - value)]]


def points_for(stats: ComparisonStats, key: str, colours: Any) -> tuple[list[Point], list[str]]:
    """Points with both metrics measured, and the names of settings without them."""
    points, missing = [], []
    for i, row in enumerate(stats.rows):
        x, y = row.metrics[key].summary, row.metrics[UTILITY].summary
        if x is None or y is None:
            missing.append(row.info.name)
            continue
        points.append(Point(
            row.info.name, x.mean, y.mean, _half_width(x), _half_width(y), min(x.n, y.n),
            row.info.name == stats.baseline, colours(i % 10),
        ))
    return points, missing


def _inliers(values: Sequence[float]) -> list[bool]:
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    limit = max(OUTLIER_MADS * 1.4826 * mad, OUTLIER_FLOOR)
    return [abs(v - median) <= limit for v in values]


def bulk(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """Which points form the bulk (robust on both axes); the others are outliers."""
    if len(xs) < 3:
        return [True] * len(xs)
    return [a and b for a, b in zip(_inliers(xs), _inliers(ys), strict=True)]


def zoom_region(points: Sequence[Point]) -> Region | None:
    """Axis limits (fractions) around the bulk, if outliers squash it; else None."""
    if len(points) < 3:
        return None
    mask = bulk([p.x for p in points], [p.y for p in points])
    core = [p for p, keep in zip(points, mask, strict=True) if keep]
    if len(core) < 2 or len(core) == len(points):
        return None

    def limits(values: list[float], errs: list[float | None], everything: list[float]) -> tuple[tuple[float, float], bool]:
        lo = max(0.0, min(v - (e or 0) for v, e in zip(values, errs, strict=True)))
        hi = min(1.0, max(v + (e or 0) for v, e in zip(values, errs, strict=True)))
        squashed = (max(values) - min(values)) * ZOOM_RATIO < (max(everything) - min(everything))
        pad = max(0.15 * (hi - lo), 0.005)
        return (lo - pad, hi + pad), squashed

    xlim, xs_squashed = limits([p.x for p in core], [p.xerr for p in core], [p.x for p in points])
    ylim, ys_squashed = limits([p.y for p in core], [p.yerr for p in core], [p.y for p in points])
    return (xlim, ylim) if xs_squashed or ys_squashed else None


def _inside(p: Point, region: Region) -> bool:
    (x0, x1), (y0, y1) = region
    return x0 <= p.x <= x1 and y0 <= p.y <= y1


# label offsets in points, tried in order; the far ones get a leader line
_NEAR = [(7, 7, "left", "bottom"), (7, -7, "left", "top"), (-7, 7, "right", "bottom"), (-7, -7, "right", "top"),
         (0, 11, "center", "bottom"), (0, -11, "center", "top"), (11, 0, "left", "center"), (-11, 0, "right", "center")]
_FAR = [(dx * 3, dy * 3, ha, va) for dx, dy, ha, va in _NEAR]


def _label_points(ax: Any, points: Sequence[Point]) -> None:
    """Label every point next to it, greedily avoiding other labels, markers and the frame."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for p in points:
        px, py = ax.transData.transform((100 * p.x, 100 * p.y))
        taken.append((px - 6, py - 6, px + 6, py + 6))

    def free(box: Any) -> bool:
        if box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1:
            return False
        return all(box.x1 < a or box.x0 > c or box.y1 < b or box.y0 > d for a, b, c, d in taken)

    for p in sorted(points, key=lambda q: -q.y):
        placed = None
        for dx, dy, ha, va in _NEAR + _FAR:
            far = (dx, dy, ha, va) in _FAR
            text = ax.annotate(
                p.name, (100 * p.x, 100 * p.y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=9,
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if far else None, zorder=4,
            )
            box = text.get_window_extent(renderer)
            if free(box):
                placed = text
                taken.append((box.x0, box.y0, box.x1, box.y1))
                break
            text.remove()
        if placed is None:  # crowded: keep the first position rather than drop the name
            ax.annotate(p.name, (100 * p.x, 100 * p.y), xytext=_NEAR[0][:2], textcoords="offset points", fontsize=9, zorder=4)


def draw_points(ax: Any, points: Sequence[Point], region: Region | None = None) -> list[Point]:
    shown = [p for p in points if region is None or _inside(p, region)]
    for p in shown:
        ax.errorbar(
            [100 * p.x], [100 * p.y],
            xerr=_bar(p.x, p.xerr), yerr=_bar(p.y, p.yerr),
            fmt="*" if p.baseline else "o", markersize=13 if p.baseline else 7, color=p.colour,
            markeredgecolor="black", markeredgewidth=0.5, ecolor=p.colour, elinewidth=1.2, capsize=3, zorder=3,
        )
    if region is not None:
        (x0, x1), (y0, y1) = region
        ax.set_xlim(100 * x0, 100 * x1)
        ax.set_ylim(100 * y0, 100 * y1)
        outside = [p for p in points if p not in shown]
        if outside:
            ax.text(0.98, 0.02, "outside this zoom: " + ", ".join(p.name for p in outside), transform=ax.transAxes,
                    fontsize=7, color="0.4", ha="right", va="bottom")
    else:
        ax.margins(0.12)
        _keep_within_percent(ax)
    return shown


def label_zoom_box(ax: Any, region: Region) -> None:
    """Name the dashed box "zoom →" at its right end, above it when the axes leave room there and
    below it otherwise, so the label never sits outside the frame or vanishes with a clipped corner."""
    (_, x1), (y0, y1) = region
    (_, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    x = min(100 * x1, x_high)
    room = 0.06 * (y_high - y_low)  # about one line of 8-pt text on these panels
    if 100 * y1 + room <= y_high:
        y, offset, va = 100 * y1, 3, "bottom"
    else:
        y, offset, va = max(100 * y0, y_low), -3, "top"
    ax.annotate("zoom →", (x, y), xytext=(-2, offset), textcoords="offset points", ha="right", va=va, fontsize=8,
                color="0.4", annotation_clip=False)


def _keep_within_percent(ax: Any, slack: float = 2.0) -> None:
    """Every plotted metric is a proportion: the automatic margins must not draw an axis out to
    110 % accuracy or −8 % attack success, which reads as a value that cannot exist."""
    for get, set_ in ((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim)):
        low, high = get()
        set_(max(low, -slack), min(high, 100 + slack))


def utility_privacy_plot(stats: ComparisonStats, path: Path) -> Path:
    """One row per attack metric (Acc@1, ξ_train): accuracy against the metric, and a zoomed
    second panel when an outlier squashes the other settings. Settings without the metric are
    listed in the panel, never placed at an invented position."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    colours = plt.get_cmap("tab10")
    every = [(key, label, *points_for(stats, key, colours)) for key, label in PANELS]
    # a metric no setting measured gets no empty panel, only a note; Acc@1 is kept as the frame
    rows = [row for row in every if row[2]] or every[:1]
    unmeasured = [label.split(" (")[0] for _, label, points, _ in every if not points]
    regions = [zoom_region(points) for _, _, points, _ in rows]
    fig = plt.figure(figsize=(12, 4.8 * len(rows)))
    grid = fig.add_gridspec(len(rows), 2)
    seeds = max((p.n for _, _, points, _ in rows for p in points), default=0)
    labelled: list[tuple[Any, list[Point]]] = []
    for r, ((_key, label, points, missing), region) in enumerate(zip(rows, regions, strict=True)):
        overview = fig.add_subplot(grid[r, 0] if region else grid[r, :])
        panels: list[tuple[Any, Region | None, str]] = [(overview, None, "all settings" if region else "")]
        if region:
            panels.append((fig.add_subplot(grid[r, 1]), region, "zoom on the bulk"))
        for ax, zoom, title in panels:
            shown = draw_points(ax, points, zoom)
            if ax is overview and region:  # the bulk is named in the zoom; here only the points outside it
                shown = [p for p in shown if not _inside(p, region)]
            labelled.append((ax, shown))
            ax.set_xlabel(f"{label} [%]  ← better defense")
            ax.set_ylabel("Test accuracy [%]  ↑ better utility")
            ax.grid(alpha=0.3)
            if title:
                ax.set_title(title, fontsize=10)
            if missing and points:
                ax.text(0.02, 0.02, "not measured: " + ", ".join(missing), transform=ax.transAxes, fontsize=7, color="gray",
                        va="bottom")
        if region:
            (x0, x1), (y0, y1) = region
            overview.add_patch(
                Rectangle((100 * x0, 100 * y0), 100 * (x1 - x0), 100 * (y1 - y0), fill=False, ls="--", color="0.4", lw=0.8)
            )
            label_zoom_box(overview, region)
    bars = f"error bars: 95 % t-interval over {seeds} seeds" if seeds > 1 else "one seed: no error bars"
    fig.suptitle(f"{stats.manifest.name}: utility vs privacy (★ = baseline {stats.baseline}; {bars})")
    if unmeasured:
        fig.text(0.01, 0.005, "not measured by any setting: " + ", ".join(unmeasured), fontsize=8, color="gray", va="bottom")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    for ax, shown in labelled:  # after the layout, so that overlap is judged where labels end up
        _label_points(ax, shown)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
