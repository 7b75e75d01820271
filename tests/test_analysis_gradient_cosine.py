"""The gradient-cosine recorder (Struppek et al. 2024, §4.4, Eq. 4) on problems with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from fedls.analysis.gradient_cosine import GradientCosineRecorder


def test_gradient_descent_on_isotropic_quadratic_keeps_direction() -> None:
    # f(x) = ||x||²/2: g = x, and x_{t+1} = (1-η) x_t keeps the direction → cosine 1.
    x = torch.tensor([[3.0, -1.0, 2.0], [0.5, 0.5, 0.0]], requires_grad=True)
    rec = GradientCosineRecorder()
    for _ in range(6):
        (g,) = torch.autograd.grad((x**2).sum() / 2, x)
        rec.record(g)
        x = (x - 0.1 * g).detach().requires_grad_(True)
    assert rec.steps == 5
    assert torch.allclose(rec.matrix(), torch.ones(5, 2, dtype=torch.float64))


def test_overshooting_step_flips_direction() -> None:
    # η = 2.5 on ||x||²/2: x_{t+1} = -1.5 x_t, so consecutive gradients point opposite → -1.
    x = torch.tensor([[1.0, 2.0]])
    rec = GradientCosineRecorder()
    for _ in range(4):
        rec.record(x.clone())
        x = x - 2.5 * x
    assert rec.per_step()["mean"] == pytest.approx([-1.0, -1.0, -1.0])
    assert rec.per_step()["std"] == pytest.approx([0.0, 0.0, 0.0])


def test_anisotropic_quadratic_matches_closed_form() -> None:
    # f = (x² + 4y²)/2, g = (x, 4y); from (1, 1) with η=0.1: next (0.9, 0.6), g' = (0.9, 2.4).
    rec = GradientCosineRecorder()
    rec.record(torch.tensor([[1.0, 4.0]]))
    rec.record(torch.tensor([[0.9, 2.4]]))
    expected = (0.9 + 9.6) / (math.sqrt(17) * math.sqrt(0.81 + 5.76))
    assert rec.overall()["mean"] == pytest.approx(expected)


def test_first_step_has_no_cosine_and_shapes_must_match() -> None:
    rec = GradientCosineRecorder()
    assert rec.record(torch.ones(2, 3)) is None
    assert rec.per_step() == {"mean": [], "std": []}
    assert math.isnan(GradientCosineRecorder().overall()["mean"])
    with pytest.raises(ValueError):
        rec.record(torch.ones(3, 3))


def test_images_are_flattened_per_sample() -> None:
    rec = GradientCosineRecorder()
    a = torch.randn(4, 1, 8, 8)
    rec.record(a)
    cos = rec.record(torch.cat([a[:2], -a[2:]]))
    assert cos.tolist() == pytest.approx([1.0, 1.0, -1.0, -1.0])
