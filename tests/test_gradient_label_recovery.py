"""Soft-label recovery (Wang et al. 2024) on single-sample gradients of the project's models."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedls.attacks.gradient import recover_soft_label
from fedls.data import load_dataset
from fedls.errors import ConfigError
from fedls.models import build_model
from fedls.smoothing import label_smoothing_loss, soft_target_cross_entropy

N = 200
NUM_CLASSES = 10


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    train = load_dataset("digits").train
    images = torch.stack([train[i][0] for i in range(len(train))])
    labels = torch.tensor([int(train[i][1]) for i in range(len(train))])
    return images, labels


def _model(name: str, trained: bool, digits: tuple[torch.Tensor, torch.Tensor]) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_model(name, (1, 8, 8), NUM_CLASSES)
    if trained:  # a few dozen SGD steps with smoothing: confident, but not saturated
        images, labels = digits
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(0)
        for _ in range(60):
            idx = torch.randint(0, len(images), (32,), generator=generator)
            optimizer.zero_grad()
            label_smoothing_loss(model(images[idx]), labels[idx], 0.1).backward()
            optimizer.step()
    return model.eval()


def _samples(kind: str, digits: tuple[torch.Tensor, torch.Tensor], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """N probe inputs and their soft targets: smoothing with α ~ U(−0.1, 0.5), or mixup of two
    different classes with μ ~ U(0, 1) (half of them smoothed on top with α ~ U(0, 0.2))."""
    images, labels = digits
    rng = np.random.default_rng(seed)
    first = torch.as_tensor(rng.integers(0, len(images), N))
    if kind == "smoothing":
        alpha = torch.as_tensor(rng.uniform(-0.1, 0.5, N))[:, None]
        targets = (1 - alpha) * F.one_hot(labels[first], NUM_CLASSES).double() + alpha / NUM_CLASSES
        return images[first], targets
    second = first.clone()
    for i in range(N):
        while labels[second[i]] == labels[first[i]]:
            second[i] = int(rng.integers(0, len(images)))
    mu = torch.as_tensor(rng.uniform(0, 1, N))[:, None]
    alpha = torch.as_tensor(np.where(np.arange(N) % 2 == 0, 0.0, rng.uniform(0, 0.2, N)))[:, None]
    mixed = mu * F.one_hot(labels[first], NUM_CLASSES).double() + (1 - mu) * F.one_hot(labels[second], NUM_CLASSES).double()
    x = mu.float()[:, :, None, None] * images[first] + (1 - mu.float())[:, :, None, None] * images[second]
    return x, (1 - alpha) * mixed + alpha / NUM_CLASSES


def _head_gradients(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form single-sample head gradients ``(p − y) xᵀ`` and ``p − y`` in float32, as a
    client would send them (checked against autograd in test_closed_form_matches_autograd)."""
    with torch.no_grad():
        feats = model.features(images)
        g = torch.softmax(model.head(feats), -1) - targets.float()
    return torch.einsum("nc,nd->ncd", g, feats), g


CASES = [(m, t, k) for m in ("cnn", "cnn-nobias") for t in (False, True) for k in ("smoothing", "mixup")]


@pytest.mark.parametrize(("name", "trained", "kind"), CASES)
def test_recovery_success_rate(name: str, trained: bool, kind: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = _model(name, trained, digits)
    images, targets = _samples(kind, digits, seed=hash((name, trained, kind)) % 2**31)
    gw, gb = _head_gradients(model, images, targets)
    weight = model.head.weight.detach()
    bias = model.head.bias.detach() if model.head.bias is not None else None
    exact = flagged = alpha_err = 0
    for i in range(N):
        result = recover_soft_label(gw[i], weight, gb[i] if bias is not None else None, bias, augmentation=kind)
        error = float(np.abs(result.label - targets[i].numpy()).max())
        exact += error < 1e-3
        flagged += result.success and error < 1e-3
        if kind == "smoothing":
            true_alpha = NUM_CLASSES * float(targets[i].min())
            alpha_err = max(alpha_err, abs(result.alpha - true_alpha))
        else:
            true_mu = float(targets[i].max() - targets[i].min()) / float(targets[i].topk(2).values.sum() - 2 * targets[i].min())
            assert result.mixup_coefficient is not None
            assert abs(result.mixup_coefficient - true_mu) < 1e-2 or error >= 1e-3
    assert exact / N >= 0.95, f"only {exact}/{N} labels recovered within 1e-3"
    assert flagged / N >= 0.95, f"the attacker's own success test accepted only {flagged}/{N} correct recoveries"
    if kind == "smoothing":
        assert alpha_err < 1e-2


@pytest.mark.parametrize("name", ["cnn", "cnn-nobias", "mlp"])
def test_closed_form_matches_autograd(name: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = _model(name, False, digits)
    images, targets = _samples("smoothing", digits, seed=7)
    gw, _ = _head_gradients(model, images, targets)
    ok = 0
    for i in range(20):
        model.zero_grad()
        soft_target_cross_entropy(model(images[i : i + 1]), targets[i : i + 1].float()).backward()
        real = model.head.weight.grad
        torch.testing.assert_close(gw[i], real, rtol=1e-4, atol=1e-7)
        bias = model.head.bias
        result = recover_soft_label(
            real, model.head.weight, None if bias is None else bias.grad, None if bias is None else bias
        )
        ok += result.success and float(np.abs(result.label - targets[i].numpy()).max()) < 1e-3
    assert ok == 20


def test_batch_gradient_is_not_claimed_as_success(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A mean over several samples is not rank one: the attacker must notice without ground truth."""
    model = _model("cnn-nobias", False, digits)
    images, targets = _samples("smoothing", digits, seed=3)
    gw, _ = _head_gradients(model, images, targets)
    claims = sum(recover_soft_label(gw[i : i + 4].mean(0), model.head.weight.detach()).success for i in range(0, 80, 4))
    assert claims == 0


@pytest.mark.parametrize(
    "weight_grad",
    [np.zeros((5, 7)), np.full((5, 7), np.nan), np.full((5, 7), np.inf)],
    ids=["zeros", "nan", "inf"],
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_degenerate_gradients_fail_cleanly(weight_grad: np.ndarray, with_bias: bool) -> None:
    weight = np.random.default_rng(0).normal(size=(5, 7))
    bias_grad, bias = (np.zeros(5), np.zeros(5)) if with_bias else (None, None)
    result = recover_soft_label(weight_grad, weight, bias_grad, bias)
    assert result.success is False
    assert np.isfinite(result.label).all() and np.isfinite(result.features).all() and np.isfinite(result.alpha)


def test_zero_bias_gradient_with_nonzero_weight_gradient_fails_cleanly() -> None:
    rng = np.random.default_rng(0)
    result = recover_soft_label(rng.normal(size=(4, 6)), rng.normal(size=(4, 6)), np.zeros(4), np.zeros(4))
    assert result.success is False and np.isfinite(result.label).all()


def test_bad_shapes_and_options_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="augmentation"):
        recover_soft_label(np.ones((4, 3)), np.ones((4, 3)), augmentation="cutmix")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="classes"):
        recover_soft_label(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ConfigError, match="3 classes"):
        recover_soft_label(np.ones((2, 3)), np.ones((2, 3)))


def _single_gradient(rng: np.random.Generator, classes: int, dim: int, alpha: float, use_bias: bool):  # noqa: ANN202
    weight = rng.normal(0, 0.02, (classes, dim))
    bias = rng.normal(0, 0.1, classes) if use_bias else None
    x = np.maximum(rng.normal(size=dim), 0)
    y = np.full(classes, alpha / classes)
    y[1] += 1 - alpha
    z = weight @ x + (bias if use_bias else 0)
    g = np.exp(z - z.max()) / np.exp(z - z.max()).sum() - y
    return np.outer(g, x), weight, (g if use_bias else None), bias, x, y


@pytest.mark.parametrize(("classes", "use_bias"), [(3, True), (5, False), (100, False)])
@pytest.mark.parametrize("alpha", [-0.1, 0.0, 0.3])
def test_large_features_and_class_counts(classes: int, use_bias: bool, alpha: float) -> None:
    """4096-d head inputs, positive and negative α."""
    gw, weight, gb, bias, x, y = _single_gradient(np.random.default_rng(5), classes, 4096, alpha, use_bias)
    result = recover_soft_label(gw, weight, gb, bias, nonnegative_features=True)
    assert result.success and np.abs(result.label - y).max() < 1e-6
    assert abs(result.alpha - alpha) < 1e-5
    np.testing.assert_allclose(result.features, x, rtol=1e-5, atol=1e-8)


def test_three_classes_without_bias_never_claims_a_wrong_label() -> None:
    """With C = 3 a smoothing label has one free equality, so several λ can fit (Wang et al.'s (2024)
    necessary condition): the attacker must then report failure rather than guess."""
    rng = np.random.default_rng(11)
    for _ in range(30):
        gw, weight, _, _, _, y = _single_gradient(rng, 3, 64, float(rng.uniform(-0.1, 0.5)), False)
        result = recover_soft_label(gw, weight)
        assert not result.success or np.abs(result.label - y).max() < 1e-3


GROUND_TRUTH_WORDS = ("truth", "target", "true", "groundtruth")


def test_attack_functions_take_no_ground_truth() -> None:
    import fedls.attacks.gradient.attack as attack
    import fedls.attacks.gradient.gradients as gradients
    import fedls.attacks.gradient.label_recovery as label_recovery
    import fedls.attacks.gradient.reconstruction as reconstruction

    checked = 0
    for module in (attack, gradients, label_recovery, reconstruction):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__:
                continue
            for param in inspect.signature(fn).parameters.values():
                text = f"{param.name} {param.annotation}".lower().replace("_", "")
                assert "groundtruth" not in text and "truth" not in text, f"{module.__name__}.{name} takes {param.name}"
            checked += 1
    assert checked >= 10
