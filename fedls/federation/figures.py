"""Labelled image figures for TensorBoard (``RoundLog.figure``) and reports.

One helper, :func:`image_grid`, draws a rows × columns grid of images with row labels on the
left, column labels on top, a caption under each image (PSNR, the judge's verdict, …) and a
title. Small images are enlarged by an integer factor with nearest-neighbour pixels before
drawing, so an 8×8 digit shows as crisp blocks instead of a blurred smudge or a speck; each
cell is at least ``min_pixels`` on its short side in the saved PNG. :func:`tile` puts several
images into one cell (e.g. five attack images of one class).

Figures are plain :class:`matplotlib.figure.Figure` objects, never pyplot state: the server
draws them in a worker thread, where pyplot's global figure manager is not safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

ImageLike = torch.Tensor | np.ndarray
ValueRange = tuple[float, float] | None
DPI = 100


def to_display(image: ImageLike, value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
    """An image as a float array in [0, 1], ``[H, W]`` (grey) or ``[H, W, 3]`` (colour).

    Accepts ``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]`` tensors (channels first, C ∈ {1, 3})
    and ``[H, W]`` / ``[H, W, C]`` arrays. ``value_range`` maps (low, high) to (0, 1) and clips;
    ``None`` stretches the image's own minimum..maximum (for unbounded reconstructions)."""
    if isinstance(image, torch.Tensor):
        array = image.detach().float().cpu().numpy()
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3:
            array = np.moveaxis(array, 0, -1)  # channels last for matplotlib
    else:
        array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(
            f"cannot show an image of shape {tuple(np.shape(image))}; "
            "expected [H, W], [C, H, W] or [H, W, C] with 1 or 3 channels"
        )
    if value_range is None:
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
    else:
        low, high = value_range
    scale = high - low if high > low else 1.0  # a constant image shows as its low end, not NaN
    return np.clip((np.nan_to_num(array, nan=low) - low) / scale, 0.0, 1.0)


def upscale(array: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel becomes a ``factor`` × ``factor`` block."""
    if factor < 1:
        raise ValueError(f"upscale factor must be ≥ 1, got {factor}")
    return array.repeat(factor, axis=0).repeat(factor, axis=1)


def scale_factor(height: int, width: int, min_pixels: int, max_pixels: int) -> int:
    """The integer factor that brings the short side to ≥ ``min_pixels`` while the long side
    stays ≤ ``max_pixels`` where possible (never below 1)."""
    wanted = math.ceil(min_pixels / max(1, min(height, width)))
    allowed = max(1, max_pixels // max(1, max(height, width)))
    return max(1, min(wanted, allowed))


def tile(images: Sequence[ImageLike] | torch.Tensor, columns: int | None = None, slots: int | None = None,
         pad: int = 1, pad_value: float = 1.0, value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
    """Several images of one shape in one display array, ``columns`` per row (default: all in
    one row), separated by ``pad`` pixels of ``pad_value``. ``slots`` reserves room for that many
    images so that rows with fewer images keep the same size (missing ones are blank)."""
    shown = [to_display(image, value_range) for image in images]
    count = max(len(shown), slots or 0)
    if count == 0:
        raise ValueError("tile needs at least one image or slot")
    if shown:
        shape = shown[0].shape
        if any(s.shape != shape for s in shown):
            raise ValueError(f"tile needs images of one shape, got {sorted({s.shape for s in shown})}")
    else:
        shape = (1, 1)
    columns = columns or count
    rows = math.ceil(count / columns)
    h, w = shape[:2]
    canvas = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, *shape[2:]), pad_value, dtype=np.float64)
    for i, image in enumerate(shown):
        r, c = divmod(i, columns)
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return canvas


def image_grid(
    cells: Sequence[Sequence[ImageLike | None]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str | None]] | None = None,
    title: str | None = None,
    value_range: ValueRange = (0.0, 1.0),
    min_pixels: int = 96,
    max_pixels: int = 640,
    font_size: float = 9.0,
) -> Figure:
    """A labelled grid: ``cells[r][c]`` is an image (or ``None`` for an empty cell) drawn at an
    integer nearest-neighbour enlargement (see :func:`scale_factor`); ``row_labels`` sit left of
    each row, ``col_labels`` above each column, ``captions[r][c]`` under each image."""
    n_rows = len(cells)
    n_cols = max((len(row) for row in cells), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("image_grid needs at least one cell")
    for name, labels, expected in (("row_labels", row_labels, n_rows), ("col_labels", col_labels, n_cols)):
        if labels is not None and len(labels) != expected:
            raise ValueError(f"{name} has {len(labels)} entries for {expected} {name.split('_')[0]}s")
    if captions is not None and (len(captions) != n_rows or any(len(c) > n_cols for c in captions)):
        raise ValueError("captions must have one row per grid row and at most one entry per column")

    arrays: list[list[np.ndarray | None]] = []
    for row in cells:
        drawn: list[np.ndarray | None] = []
        for image in list(row) + [None] * (n_cols - len(row)):
            if image is None:
                drawn.append(None)
                continue
            array = to_display(image, value_range)  # a tile() result is already in [0, 1]: unchanged
            height, width = array.shape[:2]
            drawn.append(upscale(array, scale_factor(height, width, min_pixels, max_pixels)))
        arrays.append(drawn)

    # the grid's geometry in pixels: the largest cell of each column / row, plus room for text
    widths = [max((a.shape[1] for a in col if a is not None), default=min_pixels) for col in zip(*arrays, strict=True)]
    heights = [max((a.shape[0] for a in row if a is not None), default=min_pixels) for row in arrays]
    text_px = font_size * DPI / 72 * 1.4  # one line of text
    left = (max((len(line) for s in row_labels or [] for line in str(s).split("\n")), default=0) * 0.6 * text_px) + 16
    top = text_px * (_lines(col_labels or []) + (2 if title else 0)) + 12
    # every row gets the same caption room, so images of equal size are drawn equally large
    caption_lines = [max((_lines(row) for row in captions), default=0)] * n_rows if captions else [0] * n_rows
    gap = 10
    width_px = left + sum(widths) + gap * (n_cols + 1)
    height_px = top + sum(heights) + sum(text_px * n for n in caption_lines) + gap * (n_rows + 1)

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, width_ratios=widths,
                        height_ratios=[h + text_px * n for h, n in zip(heights, caption_lines, strict=True)])
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            cell = arrays[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if cell is None:
                for spine in ax.spines.values():
                    spine.set_visible(False)
            else:
                ax.imshow(cell, cmap="gray" if cell.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
                for spine in ax.spines.values():
                    spine.set_color("0.75")
            if captions is not None and c < len(captions[r]) and captions[r][c]:
                ax.set_xlabel(str(captions[r][c]), fontsize=font_size)
            if r == 0 and col_labels is not None:
                ax.set_title(str(col_labels[c]), fontsize=font_size)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), fontsize=font_size, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=font_size + 1)
    return fig


def _lines(labels: Sequence[str | None]) -> int:
    """The most text lines any of ``labels`` takes."""
    return max((str(s).count("\n") + 1 for s in labels if s), default=0)


def render(figure: Figure) -> np.ndarray:
    """The figure as an RGB ``uint8`` array ``[H, W, 3]``, exactly as ``add_figure`` saves it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
