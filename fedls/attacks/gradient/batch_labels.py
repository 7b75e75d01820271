"""Batch soft-label recovery: per-class counts and the smoothing factor from a batch's head gradient.

For a batch of ``B`` samples trained with label smoothing (targets ``(1−α)·onehot + α/C``,
Struppek et al. (2024) Eq. 2) and a mean-reduced loss, the last linear layer ``z = Wx (+b)`` receives

    ∇b = p̄ − ȳ,   ȳ = (1−α)·k/B + α/C,   ∇W = (1/B) Σ_n (p_n − y_n) x_nᵀ,

with ``k`` the per-class counts and ``p̄`` the batch-mean prediction. Batch label restoration
(Ma et al., ICLR 2023, "iLRG") restores ``k`` for hard labels by estimating the predictions
from the head's weights; label recovery from local updates (Chen & Vikalo, 2024, "RLU") does
the same for several local steps. Neither handles soft labels with an unknown α. Here the two
unknowns are solved together through the *integrality* of the counts:

    k = B/C + v·(p̂ − 1/C) + u·d,   v = B/(1−α),

where ``d`` is the (observed) negative bias gradient and ``u`` its scale. With an exact
gradient ``u = v`` and the search is one-dimensional in ``v`` (i.e. in α); with an unknown
positive scale on the gradient (client clipping, or a bias-free head whose bias gradient is
only known up to a factor) ``(v, u)`` is searched in two dimensions. A grid over the plane
proposes integer vectors, each is refitted by least squares, and the attacker's success test
is the integrality residual of the best vector and the absence of a second vector that fits
as well — no ground truth anywhere.

The batch-mean prediction ``p̂`` is estimated as in the single-sample closed form of Wang et al. (2024)
(Wang, Liang, He, ICLR 2024, §3.1) but for a batch: with a bias, ``x̂ = ∇bᵀ∇W/‖∇b‖²`` is a
weighted mean of the batch's features, and ``p̂ = softmax(Wx̂ + b)``; this is exact to first
order whenever the per-sample logits vary little around their mean (untrained and early
models), and biased on trained models, whose predictions differ strongly between samples.
Without a bias, ``∇W Wᵀ ≈ ∇b ζᵀ`` (ζ the mean logit) is close to rank one; its leading
singular vector gives the direction of the unknown bias gradient, and its scale λ is fitted
together with the counts, alternating with ``p̂(λ)``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fedls.attacks.gradient.label_recovery import head_arrays, recover_soft_label, softmax
from fedls.errors import ConfigError

log = logging.getLogger(__name__)

# α range the search covers: the declared range [−0.2, 0.5] with a margin, so that a
# true α at the edge is not cut off by the grid.
ALPHA_RANGE = (-0.3, 0.6)
# Integrality tolerance (in counts): the largest distance of the refitted count vector from
# the integer one that still counts as a fit. Exact gradients of untrained models leave
# ≈ 0.01; a wrong integer vector leaves ≥ 0.3 on some class.
RESIDUAL_TOL = 0.2
# A second integer vector closer than this to the data makes the solution ambiguous.
AMBIGUITY_TOL = RESIDUAL_TOL
# Grid step in counts (how far the continuous count vector moves between grid points) and the
# cap on grid points; coarser steps are used when the plane is large.
_GRID_STEP = 0.2
# Gate on the premise of p̂ (see solve_counts): above it, an integral fit is not trusted.
RANK_ONE_TOL = 0.3
_MAX_GRID_POINTS = 20_000
_CANDIDATES = 64
_BIAS_FREE_ITERATIONS = 4


@dataclass(frozen=True)
class BatchLabelRecovery:
    """Result of :func:`recover_batch_labels` and :func:`~fedls.attacks.gradient.update_labels.recover_update_labels`.

    ``counts``: recovered samples per class (``C`` ints summing to the batch size).
    ``alpha``: recovered smoothing factor α̂ (0.0 when ``alpha_identifiable`` is False).
    ``success``: the attacker's own verdict, from the integrality residual and the absence of
    an equally good second count vector — no ground truth. ``residual``: distance (in counts)
    of the fitted continuous count vector from ``counts``; ``runner_up``: the same for the
    best different integer vector (``inf`` when none). ``scale``: the fitted factor on the
    observed gradient (1.0 when it was known). ``mean_prediction``: p̂ used for the fit.
    ``alpha_uncertainty``: how far α̂ can move at the fit's residual. ``method`` and
    ``diagnostics`` say how the answer was reached (``seconds``: wall time).
    """

    counts: np.ndarray
    alpha: float
    success: bool
    residual: float = math.inf
    runner_up: float = math.inf
    scale: float = 1.0
    alpha_identifiable: bool = False
    alpha_uncertainty: float = math.inf
    mean_prediction: np.ndarray | None = None
    method: str = ""
    seconds: float = 0.0
    diagnostics: dict[str, float] = field(default_factory=dict)


def failed_recovery(num_classes: int, batch_size: int, reason: str, seconds: float = 0.0) -> BatchLabelRecovery:
    """An unsuccessful result with a well-formed (uniform) count vector and the reason in ``method``."""
    log.debug("batch label recovery failed: %s", reason)
    counts = np.full(max(num_classes, 0), batch_size // max(num_classes, 1), dtype=np.int64)
    counts[: batch_size - int(counts.sum())] += 1
    return BatchLabelRecovery(counts=counts, alpha=0.0, success=False, method=f"failed: {reason}", seconds=seconds)


@dataclass(frozen=True)
class _Candidate:
    counts: np.ndarray
    coefficients: np.ndarray  # fitted (v,) or (v, u)
    residual: float


def _round_to_sum(values: np.ndarray, total: int) -> np.ndarray:
    """Round rows of ``values`` to integers that sum to ``total`` (largest remainders), clipped at 0."""
    base = np.floor(values)
    missing = total - base.sum(axis=-1)
    order = np.argsort(-(values - base), axis=-1)
    ranks = np.argsort(order, axis=-1)
    rounded = base + (ranks < missing[..., None])
    return np.maximum(rounded, 0)


def project_counts(continuous: np.ndarray, total: int) -> np.ndarray:
    """Integer counts closest to ``continuous`` on ``{k ≥ 0, Σk = total}``.

    Euclidean projection onto the scaled simplex (sort-based, Duchi et al. 2008), then
    largest-remainder rounding that keeps the sum.
    """
    v = np.asarray(continuous, dtype=np.float64)
    ordered = np.sort(v)[::-1]
    cumulative = np.cumsum(ordered) - total
    index = np.arange(1, v.size + 1)
    rho = int(np.nonzero(ordered - cumulative / index > 0)[0][-1])
    projected = np.maximum(v - cumulative[rho] / (rho + 1), 0.0)
    return _round_to_sum(projected[None], total)[0].astype(np.int64)


def _lattice(basis: np.ndarray, ranges: np.ndarray, batch_size: int, offset: np.ndarray | None = None) -> list[_Candidate]:
    """Integer count vectors ``k ≈ B/C + offset + Σ_p c_p basis_p`` with ``c_p`` in ``ranges[p]``.

    A grid over the coefficients (steps that move the continuous vector by ``_GRID_STEP``
    counts) scores each point by its distance from the nearest integer vector; the best
    distinct rounded vectors are refitted by least squares, and returned by residual.
    """
    c = basis.shape[1]
    active = np.abs(basis).max(axis=1) > 1e-12
    if not active.all():
        # A null direction (e.g. p̂ exactly uniform) carries no information: fit the rest and
        # report the null coefficient at the middle of its range.
        if not active.any():
            counts = _round_to_sum(np.full((1, c), batch_size / c) + (0.0 if offset is None else offset), batch_size)[0]
            return [_Candidate(counts.astype(np.int64), ranges.mean(axis=1), math.inf)]
        inner = _lattice(basis[active], ranges[active], batch_size, offset)
        out = []
        for cand in inner:
            coefficients = ranges.mean(axis=1)
            coefficients[active] = cand.coefficients
            out.append(_Candidate(cand.counts, coefficients, cand.residual))
        return out
    scales = np.maximum(np.abs(basis).max(axis=1), 1e-12)
    steps = _GRID_STEP / scales
    sizes = np.maximum(np.ceil((ranges[:, 1] - ranges[:, 0]) / steps).astype(int) + 1, 1)
    total = int(np.prod(sizes))
    if total > _MAX_GRID_POINTS:  # coarsen evenly; the refit below recovers the precision
        factor = (total / _MAX_GRID_POINTS) ** (1 / len(sizes))
        sizes = np.maximum((sizes / factor).astype(int), 1)
    axes = [np.linspace(lo, hi, n) for (lo, hi), n in zip(ranges, sizes, strict=True)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    base = batch_size / c + (0.0 if offset is None else offset)
    continuous = base + mesh @ basis
    rounded = np.rint(continuous)
    score = np.abs(continuous - rounded).max(axis=1)
    valid = (rounded.sum(axis=1) == batch_size) & (rounded.min(axis=1) >= 0)
    score = np.where(valid, score, np.inf)
    order = np.argsort(score)[: _CANDIDATES * 4]
    order = order[np.isfinite(score[order])]
    if order.size == 0:  # nothing rounds consistently: fall back to sum-preserving rounding
        best = int(np.argmin(np.abs(continuous - rounded).max(axis=1)))
        proposals = _round_to_sum(continuous[best][None], batch_size)
    else:
        proposals = np.unique(rounded[order], axis=0)[: _CANDIDATES * 4]
    target = proposals - base
    coefficients, *_ = np.linalg.lstsq(basis.T, target.T, rcond=None)
    fitted = base + coefficients.T @ basis
    residuals = np.abs(fitted - proposals).max(axis=1)
    inside = np.all(
        (coefficients.T >= ranges[:, 0] - 0.05 * np.abs(ranges[:, 0]))
        & (coefficients.T <= ranges[:, 1] + 0.05 * np.abs(ranges[:, 1])),
        axis=1,
    )
    residuals = np.where(inside, residuals, np.inf)
    ranked = np.argsort(residuals)
    return [
        _Candidate(proposals[i].astype(np.int64), coefficients[:, i], float(residuals[i]))
        for i in ranked
        if math.isfinite(residuals[i])
    ] or [_Candidate(proposals[i].astype(np.int64), coefficients[:, i], math.inf) for i in ranked[:1]]


def _v_range(batch_size: int) -> tuple[float, float]:
    return batch_size / (1 - ALPHA_RANGE[0]), batch_size / (1 - ALPHA_RANGE[1])


@dataclass(frozen=True)
class _Fit:
    best: _Candidate
    runner_up: float
    alpha: float
    alpha_uncertainty: float
    scale: float


def _fit_counts(delta: np.ndarray, direction: np.ndarray, batch_size: int, scale_known: bool, signed: bool = False) -> _Fit:
    """Integer counts, α and the gradient scale from ``p̂ − 1/C`` (``delta``) and the observed
    negative bias gradient ``direction`` (see the module docstring)."""
    c = delta.shape[0]
    v_lo, v_hi = _v_range(batch_size)
    if scale_known:
        basis = (delta + direction)[None, :]
        ranges = np.array([[v_lo, v_hi]])
    else:
        norm = max(float(np.abs(direction).max()), 1e-300)
        unit = direction / norm
        u_hi = 1.1 * (batch_size + v_hi * float(np.abs(delta).max()) + batch_size / c)
        basis = np.stack([delta, unit])
        ranges = np.array([[v_lo, v_hi], [-u_hi if signed else 0.0, u_hi]])
    candidates = _lattice(basis, ranges, batch_size)
    best = candidates[0]
    others = [cand.residual for cand in candidates[1:] if not np.array_equal(cand.counts, best.counts)]
    v = float(best.coefficients[0])
    # α uncertainty: how far v can move, at the fit's residual, along the part of the α
    # direction that the scale cannot absorb.
    alpha_dir = basis[0]
    if not scale_known:
        unit = basis[1]
        alpha_dir = alpha_dir - unit * (alpha_dir @ unit) / max(unit @ unit, 1e-300)
    sensitivity = float(np.linalg.norm(alpha_dir))
    noise = max(best.residual, 1e-3)
    v_error = noise / sensitivity if sensitivity > 0 else math.inf
    alpha = 1.0 - batch_size / v if v > 0 else 0.0
    alpha_uncertainty = v_error * batch_size / v**2 if v > 0 and math.isfinite(v_error) else math.inf
    if scale_known:
        scale = 1.0
    elif v > 0:
        scale = float(best.coefficients[1]) / v / max(float(np.abs(direction).max()), 1e-300)
    else:
        scale = math.nan
    return _Fit(best, min(others, default=math.inf), alpha, alpha_uncertainty, scale)


def counts_at_alpha(
    mean_prediction: np.ndarray, bias_grad: np.ndarray, batch_size: int, alpha: float, *, scale_known: bool
) -> np.ndarray:
    """Counts for a *given* α (e.g. the α the server declared) when integrality cannot fix it.

    Known scale: ``k = B/(1−α)·(p̂ − α/C − ∇b)`` rounded to sum ``B``. Unknown scale: the scale
    ``u`` in ``k = B/C + v(p̂ − 1/C) + u·d`` is the one whose count vector is closest to
    integers (a 1-D search); noisy inputs make that choice weak.
    """
    c = mean_prediction.shape[0]
    v = batch_size / (1.0 - alpha)
    delta = mean_prediction - 1.0 / c
    if scale_known:
        continuous = batch_size / c + v * (delta - bias_grad)
        return _round_to_sum(continuous[None], batch_size)[0].astype(np.int64)
    unit = -bias_grad / max(float(np.abs(bias_grad).max()), 1e-300)
    u_hi = 1.1 * (batch_size + v * float(np.abs(delta).max()) + batch_size / c)
    best = _lattice(unit[None], np.array([[0.0, u_hi]]), batch_size, offset=v * delta)[0]
    return best.counts


def _validate(
    weight_grad: object, weight: object, bias_grad: object | None, bias: object | None, batch_size: int, augmentation: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    if augmentation != "smoothing":
        raise ConfigError(f"batch label recovery supports augmentation='smoothing' only (got {augmentation!r})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer (got {batch_size!r})")
    gw, w, gb, b = head_arrays(weight_grad, weight, bias_grad, bias, "batch label recovery")
    for name, a in (("bias gradient", gb), ("bias", b)):
        if a is not None and a.shape != (gw.shape[0],):
            raise ConfigError(f"the {name} must have one entry per class ({gw.shape[0]}); got shape {a.shape}")
    return gw, w, gb, b


Head = tuple[np.ndarray, np.ndarray | None, float]
"""A head ``(W, b or None, weight)``: p̂ is the weighted mean of ``softmax(Wx̂ + b)`` over heads."""


def _predict(features: np.ndarray, heads: Sequence[Head]) -> np.ndarray:
    total = sum(h[2] for h in heads)
    out = np.zeros(heads[0][0].shape[0])
    for w, b, weight in heads:
        z = w @ features + (0.0 if b is None else b)
        out += weight * softmax(z)
    return out / total


def solve_counts(
    gw: np.ndarray,
    gb: np.ndarray | None,
    heads: Sequence[Head],
    batch_size: int,
    *,
    scale_known: bool,
) -> BatchLabelRecovery:
    """The solver behind :func:`recover_batch_labels`, for validated float64 arrays.

    ``gw``/``gb``: the (possibly scaled) mean gradient of the head. ``heads``: the head(s)
    whose predictions p̂ averages (one head for a single gradient; several along the local
    trajectory for a FedAvg update). ``scale_known``: False when the gradient carries an
    unknown positive factor (client clipping).
    """
    start = time.perf_counter()
    c, _ = gw.shape
    arrays = [gw, *(a for a in (gb,) if a is not None)] + [h[0] for h in heads] + [h[1] for h in heads if h[1] is not None]
    if not all(np.isfinite(a).all() for a in arrays):
        return failed_recovery(c, batch_size, "non-finite gradient or weights", time.perf_counter() - start)
    if not np.any(gw) and (gb is None or not np.any(gb)):
        return failed_recovery(c, batch_size, "zero gradient", time.perf_counter() - start)
    diagnostics: dict[str, float] = {}
    if gb is not None:
        denom = float(gb @ gb)
        if denom <= 0:
            return failed_recovery(c, batch_size, "zero bias gradient", time.perf_counter() - start)
        features = gb @ gw / denom
        p_hat = _predict(features, heads)
        # How well one mean feature explains the head's logit-space gradient: ∇W Wᵀ ≈ ∇b (Wx̂)ᵀ
        # when the per-sample logits vary little (the premise of p̂). Measured: ≈ 0.02–0.26 on
        # untrained and early models, 0.2–0.98 on trained ones, where p̂ is biased.
        logit_gradient = gw @ heads[0][0].T
        norm = float(np.linalg.norm(logit_gradient))
        rank_one = float(np.linalg.norm(logit_gradient - np.outer(gb, heads[0][0] @ features)) / norm) if norm > 0 else math.inf
        diagnostics["logit_rank_one_residual"] = rank_one
        fit = _fit_counts(p_hat - 1.0 / c, -gb, batch_size, scale_known)
        method = "bias: x̂ = ∇bᵀ∇W/‖∇b‖², " + ("1-D α lattice" if scale_known else "2-D (α, scale) lattice")
    else:
        # Bias-free head: ∇W Wᵀ ≈ ḡ ζᵀ; its leading left singular vector is the direction of the
        # unseen bias gradient ḡ = λ·u, and x̂(λ) = ∇Wᵀu/(λ‖u‖²).
        w0 = heads[0][0]
        left, _, _ = np.linalg.svd(gw @ w0.T)
        u = left[:, 0] / np.abs(left[:, 0]).max()
        projected = gw.T @ u / float(u @ u)
        lam: float | None = None
        last: _Fit | None = None
        for _ in range(_BIAS_FREE_ITERATIONS):
            p_hat = _predict(projected / lam, heads) if lam else _predict(np.zeros(gw.shape[1]), heads)
            new = _fit_counts(p_hat - 1.0 / c, -u, batch_size, scale_known=False, signed=True)
            v, t = float(new.best.coefficients[0]), float(new.best.coefficients[1])
            converged = last is not None and np.array_equal(new.best.counts, last.best.counts)
            last = new
            if v <= 0 or t == 0:
                break
            lam = t / v  # ḡ = λ·u under an exact gradient (k = B/C + v(δ − λu))
            if converged:
                break
        # _BIAS_FREE_ITERATIONS > 0, so the loop body ran at least once and set ``last``.
        assert last is not None
        fit = last
        diagnostics["lambda"] = float(lam or 0.0)
        # Measured (docs/gradient_inversion.md): the rank-one model is too coarse for B > 1 and
        # the alternation can settle on a saturated p̂ that fits integers spuriously, so this
        # path returns its best counts but never claims success.
        diagnostics["success_never_claimed"] = 1.0
        method = "no bias: rank-one ∇W Wᵀ, λ and (α, scale) fitted alternately (approximate; never claims success)"
        if not scale_known:
            method += "; p̂ assumes an unscaled gradient"
    best = fit.best
    identifiable = fit.alpha_uncertainty < 0.02
    premise = diagnostics.get("logit_rank_one_residual", math.inf) < RANK_ONE_TOL or batch_size == 1
    success = bool(best.residual < RESIDUAL_TOL and fit.runner_up >= AMBIGUITY_TOL and gb is not None and premise)
    diagnostics.update({"grid_candidates": float(len(best.counts)), "mean_prediction_spread": float(np.ptp(p_hat))})
    return BatchLabelRecovery(
        counts=best.counts,
        alpha=float(fit.alpha) if identifiable else 0.0,
        success=success,
        residual=best.residual,
        runner_up=fit.runner_up,
        scale=fit.scale,
        alpha_identifiable=identifiable,
        alpha_uncertainty=fit.alpha_uncertainty,
        mean_prediction=p_hat,
        method=method,
        seconds=time.perf_counter() - start,
        diagnostics=diagnostics,
    )


def _single_sample(gw: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> BatchLabelRecovery:
    """One sample, no bias gradient: Wang et al.'s (2024) λ search is exact there, so use it."""
    start = time.perf_counter()
    single = recover_soft_label(gw, w, None, b, augmentation="smoothing")
    c = gw.shape[0]
    if single.top1 < 0:
        return failed_recovery(c, 1, single.method, time.perf_counter() - start)
    counts = np.zeros(c, dtype=np.int64)
    counts[single.top1] = 1
    return BatchLabelRecovery(
        counts=counts, alpha=single.alpha, success=single.success, residual=single.label_std, runner_up=math.inf,
        scale=1.0, alpha_identifiable=single.success, alpha_uncertainty=single.label_std * c,
        mean_prediction=None, method="no bias, one sample: Wang et al. (2024) λ search", seconds=time.perf_counter() - start,
        diagnostics=dict(single.diagnostics),
    )


def recover_batch_labels(
    weight_grad: object,
    weight: object,
    *,
    bias_grad: object | None = None,
    bias: object | None = None,
    batch_size: int,
    augmentation: Literal["smoothing"] = "smoothing",
) -> BatchLabelRecovery:
    """Per-class counts and α̂ of a batch from the mean gradient of its label-smoothed loss.

    ``weight_grad``/``weight``: ``[C, d]`` (arrays or tensors); ``bias_grad``/``bias``: ``[C]``,
    or ``None`` for a bias-free head (a known bias without its gradient may be passed as
    ``bias`` alone). ``batch_size``: the number of samples behind the mean. Only
    ``augmentation="smoothing"`` is defined for batches. α ∈ [−0.3, 0.6] is searched.

    Degenerate input (all-zero or non-finite gradient) returns ``success=False``; wrong shapes
    and options raise :class:`~fedls.errors.ConfigError`.
    """
    gw, w, gb, b = _validate(weight_grad, weight, bias_grad, bias, batch_size, augmentation)
    if gb is None and batch_size == 1:
        return _single_sample(gw, w, b)
    result = solve_counts(gw, gb, [(w, b, 1.0)], int(batch_size), scale_known=True)
    log.debug("batch labels: counts=%s alpha=%.4f success=%s (%s)", result.counts, result.alpha, result.success, result.method)
    return result
