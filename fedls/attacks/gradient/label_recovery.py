"""Analytic recovery of an augmented (soft) label and the last-layer input from one gradient.

Wang, Liang, He (ICLR 2024), §3.
For one sample and a last layer ``z = Wx (+b)`` trained with a soft-target cross-entropy,
``g = ∂L/∂z = p − y``, ``∇W = g xᵀ`` and ``∇b = g``. Every row of ``∇W`` is a multiple of
``x`` and ``Σ_i g_i = 0`` because both ``p`` and ``y`` sum to one.

Only what a server sees is used here: the head's weights and their gradient. Nothing in
this module accepts ground truth.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fedls.errors import ConfigError

log = logging.getLogger(__name__)

Augmentation = Literal["smoothing", "mixup"]
AUGMENTATIONS: tuple[str, ...] = ("smoothing", "mixup")

# Residual tolerances of the ground-truth-free success test. Client gradients arrive in
# float32, so a correct recovery leaves residuals around 1e-7; a batch gradient or a
# wrong λ leaves residuals orders of magnitude larger.
RANK_ONE_TOL = 1e-3
LABEL_STD_TOL = 1e-4
# Bias-free heads only: floor spread relative to the spread of the gradient term (see
# relative_label_loss); near 1 at the spurious |λ| → ∞ limit, near 0 at an exact recovery.
RELATIVE_STD_TOL = 1e-3

# The global fallback scans |λ| over this log10 window on both signs. |λ| = 1/|g_r| and
# |g_r| = max_i |p_i − y_i| is at most about 1 + |α|, so the window starts below 1;
# confident models give tiny |g_r| and hence very large |λ|.
_LOG10_WINDOW = (-2.0, 10.0)
_GRID_POINTS = 1200


@dataclass(frozen=True)
class LabelRecovery:
    """Result of :func:`recover_soft_label`.

    ``label``: recovered soft label ŷ (length C, sums to one). ``features``: recovered head
    input x̂. ``top1``: argmax ŷ. ``alpha``: recovered smoothing factor α̂. ``mixup_coefficient``:
    recovered weight of the dominant class of a mixup pair (``None`` for smoothing) and
    ``mixup_classes`` the two classes. ``success``: the attacker's own verdict, from residuals
    only (see :func:`recover_soft_label`). ``scale``: λ (``None`` when the head has a bias).
    ``label_loss``: the variance criterion at the solution. ``rank_one_residual``: relative
    distance of ∇W from the rank-one form ``g x̂ᵀ`` implied by the solution.
    """

    label: np.ndarray
    features: np.ndarray
    top1: int
    alpha: float
    success: bool
    augmentation: str
    mixup_coefficient: float | None = None
    mixup_classes: tuple[int, int] | None = None
    scale: float | None = None
    label_loss: float = math.inf
    label_std: float = math.inf
    rank_one_residual: float = math.inf
    method: str = ""
    diagnostics: dict[str, float] = field(default_factory=dict)


def _floor_count(num_classes: int, augmentation: str) -> int:
    """How many entries of ŷ share the smoothing floor α/C (C−1 for smoothing, C−2 for mixup)."""
    return num_classes - 1 if augmentation == "smoothing" else num_classes - 2


def label_loss(labels: np.ndarray, augmentation: str) -> np.ndarray:
    """Wang et al.'s (2024) label loss: population variance of the C−1 (smoothing) or C−2 (mixup)
    smallest entries of ŷ, for a batch ``[..., C]`` of candidate labels.

    With three classes a mixup label has a single floor entry, whose variance is always
    zero; there the loss is that entry squared, i.e. mixup without extra smoothing is assumed.
    """
    k = _floor_count(labels.shape[-1], augmentation)
    smallest = np.sort(labels, axis=-1)[..., :k]
    if k == 1:
        return smallest[..., 0] ** 2
    return smallest.var(axis=-1)


def relative_label_loss(labels: np.ndarray, gradient_term: np.ndarray, augmentation: str) -> np.ndarray:
    """The label loss divided by the same statistic of the gradient term ``ρ/λ`` on the same
    entries (the floor entries of ŷ), batched over ``[..., C]``.

    Why: as |λ| → ∞, ŷ(λ) tends to a one-hot vector and the raw variance decays like 1/λ², so
    the raw loss has a spurious infimum at the edge of any search window. The normalised loss
    tends to 1 there and is 0 only where the floor entries really coincide.
    """
    k = _floor_count(labels.shape[-1], augmentation)
    order = np.argsort(labels, axis=-1)[..., :k]
    floor = np.take_along_axis(labels, order, axis=-1)
    term = np.take_along_axis(np.broadcast_to(gradient_term, labels.shape), order, axis=-1)
    if k == 1:
        return floor[..., 0] ** 2 / (term[..., 0] ** 2 + 1e-300)
    return floor.var(axis=-1) / (term.var(axis=-1) + 1e-300)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, shifted by the row maximum for stability."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _describe(label: np.ndarray, augmentation: str) -> tuple[float, float | None, tuple[int, int] | None]:
    """α̂ and the mixup coefficient from ŷ.

    Smoothing: ŷ = (1−α)e_c + α/C, so every non-max entry equals α/C and α̂ = C·mean(non-max).
    Mixup (optionally smoothed): ŷ = (1−α)(μ e_a + (1−μ) e_b) + α/C; the C−2 floor entries give
    α̂ and the two top entries give μ̂ = (ŷ_a − α̂/C) / (ŷ_a + ŷ_b − 2α̂/C), with μ̂ ≥ 1/2.
    """
    c = label.shape[0]
    order = np.argsort(label)[::-1]
    k = _floor_count(c, augmentation)
    floor = float(label[order[c - k :]].mean())
    alpha = c * floor
    if augmentation == "smoothing":
        return alpha, None, None
    a, b = int(order[0]), int(order[1])
    top = label[a] + label[b] - 2 * floor
    mu = float((label[a] - floor) / top) if abs(top) > 1e-12 else 0.5
    return alpha, mu, (a, b)


def _rank_one_residual(weight_grad: np.ndarray, g: np.ndarray, x: np.ndarray) -> float:
    norm = np.linalg.norm(weight_grad)
    return float(np.linalg.norm(weight_grad - np.outer(g, x)) / norm) if norm > 0 else math.inf


def _failure(num_classes: int, num_features: int, augmentation: str, reason: str) -> LabelRecovery:
    log.debug("label recovery failed: %s", reason)
    return LabelRecovery(
        label=np.full(num_classes, 1.0 / max(num_classes, 1)),
        features=np.zeros(num_features),
        top1=-1,
        alpha=0.0,
        success=False,
        augmentation=augmentation,
        method=f"failed: {reason}",
    )


def as_float64(value: object | None) -> np.ndarray | None:
    """An array or tensor as a float64 array (``None`` stays ``None``)."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def head_arrays(
    weight_grad: object, weight: object, bias_grad: object | None, bias: object | None, task: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The head's weight, bias and their gradients as float64 arrays, with the checks every
    label-recovery entry point needs (matching [classes, features] shapes, at least 3 classes,
    no bias gradient without the bias); ``task`` names the caller in the error."""
    gw, w = as_float64(weight_grad), as_float64(weight)
    gb, b = as_float64(bias_grad), as_float64(bias)
    if gw is None or w is None:
        raise ConfigError(f"{task} needs the head's weight and its gradient")
    if gw.ndim != 2 or w.shape != gw.shape:
        raise ConfigError(f"weight and its gradient must both be [classes, features]; got {w.shape} and {gw.shape}")
    if gw.shape[0] < 3:
        raise ConfigError(f"{task} needs at least 3 classes (got {gw.shape[0]})")
    if gb is not None and b is None:
        raise ConfigError("a bias gradient was given without the bias; pass both or neither")
    return gw, w, gb, b


def recover_soft_label(
    weight_grad: object,
    weight: object,
    bias_grad: object | None = None,
    bias: object | None = None,
    augmentation: Augmentation = "smoothing",
    nonnegative_features: bool = False,
) -> LabelRecovery:
    """Recover ŷ and x̂ from the gradient of one sample's loss w.r.t. the last linear layer.

    ``weight_grad`` / ``weight``: ``[C, D]``; ``bias_grad`` / ``bias``: ``[C]`` or ``None`` for
    a bias-free head. Arrays or tensors; computed in float64.

    * With bias (Wang et al. 2024, §3.1): ``x̂`` solves ``∇W_i = ∇b_i x`` in least squares (the
      ``∇b_i``-weighted mean of ``∇W_i/∇b_i``, which down-weights rows where ``∇b_i`` ≈ 0),
      ``p = softmax(Wx̂ + b)`` and ``ŷ = p − ∇b``.
    * Without bias (§3.2): :func:`_without_bias`. If several λ reproduce a valid label (few
      classes), the result is ambiguous and ``success`` is False, unless
      ``nonnegative_features`` (the attacker knows the head input is post-ReLU, as in fedls'
      CNN and MLP) singles one out.

    ``success`` needs no ground truth: ∇W must be rank one along x̂ (single-sample structure,
    residual < 1e-3) and ŷ must have the declared augmentation's structure (std of its floor
    entries < 1e-4). Degenerate inputs (zero, NaN/inf, wrong shapes) give ``success=False``.
    """
    if augmentation not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {augmentation!r}; use one of {', '.join(AUGMENTATIONS)}")
    gw, w, gb, b = head_arrays(weight_grad, weight, bias_grad, bias, "soft-label recovery")
    c, d = gw.shape
    arrays = [a for a in (gw, w, gb, b) if a is not None]
    if not all(np.isfinite(a).all() for a in arrays):
        return _failure(c, d, augmentation, "non-finite gradient or weights")
    if not np.any(gw):
        return _failure(c, d, augmentation, "zero weight gradient")
    if gb is not None:
        if b is None or gb.shape != (c,) or b.shape != (c,):
            raise ConfigError("bias and bias gradient must both be given, with one entry per class")
        return _with_bias(gw, w, gb, b, augmentation)
    if b is not None and b.shape != (c,):
        raise ConfigError("the bias must have one entry per class")
    return _without_bias(gw, w, b, augmentation, nonnegative_features)


def _finish(
    gw: np.ndarray,
    label: np.ndarray,
    features: np.ndarray,
    g: np.ndarray,
    augmentation: str,
    relative_std: float = 0.0,
    *,
    method: str = "",
    scale: float | None = None,
    diagnostics: dict[str, float] | None = None,
) -> LabelRecovery:
    loss = float(label_loss(label, augmentation))
    std = math.sqrt(max(loss, 0.0)) if _floor_count(label.shape[0], augmentation) > 1 else abs(float(np.sort(label)[0]))
    residual = _rank_one_residual(gw, g, features)
    alpha, mu, pair = _describe(label, augmentation)
    finite = bool(np.isfinite(label).all() and np.isfinite(features).all())
    success = finite and residual < RANK_ONE_TOL and std < LABEL_STD_TOL and relative_std < RELATIVE_STD_TOL
    if not finite:
        return _failure(gw.shape[0], gw.shape[1], augmentation, "non-finite solution")
    return LabelRecovery(
        label=label,
        features=features,
        top1=int(np.argmax(label)),
        alpha=float(alpha),
        success=bool(success),
        augmentation=augmentation,
        mixup_coefficient=mu,
        mixup_classes=pair,
        label_loss=loss,
        label_std=std,
        rank_one_residual=residual,
        scale=scale,
        method=method,
        diagnostics={} if diagnostics is None else diagnostics,
    )


def _with_bias(gw: np.ndarray, w: np.ndarray, gb: np.ndarray, b: np.ndarray, augmentation: str) -> LabelRecovery:
    denom = float(gb @ gb)
    if denom <= 0 or not math.isfinite(denom):
        return _failure(gw.shape[0], gw.shape[1], augmentation, "zero bias gradient")
    x = gb @ gw / denom
    p = softmax(w @ x + b)
    label = p - gb
    return _finish(gw, label, x, gb, augmentation, method="closed-form (bias)")


def _distinct_roots(candidates: list[tuple[float, float]]) -> list[float]:
    """λ values whose loss says "exact recovery", merged when they agree to 1e-4 relative."""
    roots: list[float] = []
    for lam, loss in candidates:
        if loss < RELATIVE_STD_TOL**2 and all(abs(lam / r - 1) > 1e-4 for r in roots):
            roots.append(lam)
    return roots


def _without_bias(
    gw: np.ndarray, w: np.ndarray, b: np.ndarray | None, augmentation: str, nonnegative_features: bool = False
) -> LabelRecovery:
    """Wang et al. (2024) §3.2: x(λ) = λ·x₀ with x₀ = ∇W_r, r = argmax_i |Σ_j ∇W_ij|.

    Since ∇W_i = g_i x, ``x₀ = g_r x`` and the true scale is λ* = 1/g_r. The ratio
    ``ρ_i = ∇W_i/x₀ = g_i/g_r`` is taken by projecting each row on x₀ (least squares over all
    columns instead of the paper's single column j = argmax|x|, which is less noisy in float32),
    so ``ŷ(λ) = softmax(λ·W x₀ (+ b)) − ρ/λ``; Σŷ = 1 for every λ (Theorem 1). λ is the minimiser of
    the label loss, found by :func:`_search_scale`.
    """
    c, d = gw.shape
    r = int(np.argmax(np.abs(gw.sum(axis=1))))
    x0 = gw[r]
    norm2 = float(x0 @ x0)
    if norm2 <= 0:
        return _failure(c, d, augmentation, "zero reference row")
    rho = gw @ x0 / norm2
    z0 = w @ x0
    offset = np.zeros(c) if b is None else b  # a known bias whose gradient was not shared

    def labels_at(lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam, dtype=np.float64)[..., None]
        return softmax(lam * z0 + offset) - rho / lam

    def search_loss(lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam, dtype=np.float64)
        return relative_label_loss(labels_at(lam), rho / lam[..., None], augmentation)

    candidates, evaluations = _search_scale(search_loss)
    if not candidates:
        return _failure(c, d, augmentation, "λ search found no finite minimum")
    roots = _distinct_roots(candidates)
    if nonnegative_features and len(roots) > 1:
        # Attacker assumption (opt-in): the head input is post-ReLU, so x̂ = λ·x₀ must be ≥ 0,
        # which fixes sign(λ) to the sign of x₀'s dominant entries.
        sign = 1.0 if x0.sum() >= 0 else -1.0
        roots = [root for root in roots if np.sign(root) == sign] or roots
    ambiguous = len(roots) > 1
    lam = roots[0] if roots else candidates[0][0]
    label = labels_at(np.array(lam))
    features = lam * x0
    relative = float(search_loss(np.array(lam)))
    return _finish(
        gw, label, features, rho / lam, augmentation,
        relative_std=math.inf if ambiguous else math.sqrt(max(relative, 0.0)),
        scale=float(lam), method="λ search (no bias)",
        diagnostics={"lambda": float(lam), "reference_row": float(r), "evaluations": float(evaluations),
                     "relative_label_loss": relative, "roots": float(len(roots))},
    )


def _search_scale(loss_at: Callable[[np.ndarray], np.ndarray]) -> tuple[list[tuple[float, float]], int]:
    """Minimise the 1-D label loss over λ ≠ 0 (Wang et al. 2024, §3.2, "search for λ_r").

    λ is parameterised as ``±10^t``. First a bounded local search around λ = +1 and λ = −1
    (the paper's two starts); then a global scan of ``t`` over a log-spaced grid on both
    signs, whose best cells are refined as well. The scan is the fallback when the local
    searches miss, and it also reveals a second root (possible when few entries constrain λ,
    e.g. C = 3), which the caller must treat as ambiguity.

    Every bracket is refined at once by a vectorised zoom (:func:`_zoom`): one batched loss
    evaluation per level for all brackets instead of one scalar Brent iteration per call,
    which is what made the bias-free search slow (≈ 60 ms → a few ms).
    Returns the candidates ``(λ, loss)`` sorted by loss, and the number of loss evaluations.
    """
    signs: list[float] = [1.0, -1.0]  # local starts at ±1: a window of a factor 100 around |λ| = 1
    brackets: list[tuple[float, float]] = [(-1.0, 1.0), (-1.0, 1.0)]

    ts = np.linspace(*_LOG10_WINDOW, _GRID_POINTS)
    step = ts[1] - ts[0]
    with np.errstate(all="ignore"):
        grid = np.concatenate([ts, ts])
        grid_signs = np.repeat([1.0, -1.0], ts.size)
        all_values = np.asarray(loss_at(grid_signs * 10.0**grid), dtype=np.float64)
    evaluations = grid.size
    for k, sign in enumerate((1.0, -1.0)):
        values = all_values[k * ts.size : (k + 1) * ts.size]
        values = np.where(np.isfinite(values), values, np.inf)
        # local minima of the grid (not just the smallest values, which crowd around one root)
        interior = (values[1:-1] <= values[:-2]) & (values[1:-1] <= values[2:])
        minima = np.flatnonzero(interior) + 1
        for i in minima[np.argsort(values[minima])][:3]:
            signs.append(sign)
            brackets.append((float(ts[i] - step), float(ts[i] + step)))
    found, zoom_evaluations = _zoom(loss_at, np.asarray(signs), np.asarray(brackets))
    found.sort(key=lambda c: c[1])
    return found, evaluations + zoom_evaluations


_ZOOM_POINTS = 33  # points per bracket and level
_ZOOM_TOL = 1e-11  # final bracket width in t = log10|λ|, as the former Brent xatol


def _zoom(
    loss_at: Callable[[np.ndarray], np.ndarray], signs: np.ndarray, brackets: np.ndarray
) -> tuple[list[tuple[float, float]], int]:
    """Minimise ``loss(sign·10^t)`` over ``t`` in each bracket, all brackets in one batch.

    Each level evaluates an even grid of every bracket and shrinks the bracket to the two
    cells around its best point (a factor 16 per level), until it is narrower than
    ``_ZOOM_TOL``. A grid zoom, unlike Brent, never leaves a bracket and needs no
    unimodality inside it beyond the final cells.
    """
    lo, hi = brackets[:, 0].copy(), brackets[:, 1].copy()
    frac = np.linspace(0.0, 1.0, _ZOOM_POINTS)
    evaluations = 0
    best_t = (lo + hi) / 2
    best_v = np.full(lo.shape, np.inf)
    while True:
        t = lo[:, None] + (hi - lo)[:, None] * frac[None, :]
        with np.errstate(all="ignore"):
            values = np.asarray(loss_at(signs[:, None] * 10.0**t), dtype=np.float64)
        evaluations += t.size
        values = np.where(np.isfinite(values), values, np.inf)
        j = np.argmin(values, axis=1)
        rows = np.arange(lo.size)
        better = values[rows, j] <= best_v
        best_t = np.where(better, t[rows, j], best_t)
        best_v = np.where(better, values[rows, j], best_v)
        if np.all(hi - lo < _ZOOM_TOL):
            break
        width = (hi - lo) / (_ZOOM_POINTS - 1)
        lo, hi = np.maximum(lo, t[rows, j] - width), np.minimum(hi, t[rows, j] + width)
    found = [
        (float(s * 10.0**bt), float(bv))
        for s, bt, bv in zip(signs, best_t, best_v, strict=True)
        if math.isfinite(bv) and bv < 1e300
    ]
    return found, evaluations
