"""Batch soft-label recovery (counts and α̂) from batch gradients and from FedAvg updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from fedls.attacks.gradient import recover_batch_labels, recover_update_labels
from fedls.attacks.gradient.update_labels import momentum_weights
from fedls.data import DataOptions, load_dataset
from fedls.defenses.base import Defense, TrainingContext
from fedls.errors import ConfigError
from fedls.models import build_model
from fedls.smoothing import label_smoothing_loss
from fedls.threat_model import ClientRecipe
from fedls.training.local import train_local

C = 10
ALPHAS = (-0.1, 0.0, 0.1, 0.3)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    train = load_dataset("digits", DataOptions()).train
    images = torch.stack([train[i][0] for i in range(len(train))])
    labels = torch.tensor([int(train[i][1]) for i in range(len(train))])
    return images, labels


def _model(name: str, trained_steps: int, digits: tuple[torch.Tensor, torch.Tensor]) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_model(name, (1, 8, 8), C)
    images, labels = digits
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(trained_steps):
        idx = torch.randint(0, len(images), (32,), generator=generator)
        optimizer.zero_grad()
        label_smoothing_loss(model(images[idx]), labels[idx], 0.1).backward()
        optimizer.step()
    return model


def _batch_case(model: torch.nn.Module, digits, rng: np.random.Generator, batch: int, alpha: float):  # noqa: ANN001, ANN202
    images, labels = digits
    idx = torch.as_tensor(rng.choice(len(images), batch, replace=False))
    model.zero_grad()
    label_smoothing_loss(model(images[idx]), labels[idx], alpha).backward()  # mean-reduced, float32
    head = model.head
    kwargs = {"bias_grad": head.bias.grad, "bias": head.bias} if head.bias is not None else {}
    return head.weight.grad, head.weight, kwargs, np.bincount(labels[idx].numpy(), minlength=C)


UNTRAINED = [("cnn", b) for b in (1, 4, 16, 64)] + [("cnn-nobias", 1)]


@pytest.mark.parametrize(("name", "batch"), UNTRAINED)
def test_untrained_batches_exact_counts_and_alpha(name: str, batch: int, digits) -> None:  # noqa: ANN001
    model = _model(name, 0, digits)
    rng = np.random.default_rng(batch)
    exact = claimed_correct = claimed = 0
    alpha_errors = []
    n = 0
    for alpha in ALPHAS:
        for _ in range(5):
            gw, w, kwargs, truth = _batch_case(model, digits, rng, batch, alpha)
            result = recover_batch_labels(gw, w, batch_size=batch, **kwargs)
            assert result.counts.sum() == batch and result.counts.dtype.kind == "i" and result.counts.min() >= 0
            ok = np.array_equal(result.counts, truth)
            exact += ok
            claimed += result.success
            claimed_correct += result.success and ok
            if result.alpha_identifiable:
                alpha_errors.append(abs(result.alpha - alpha))
            n += 1
    assert exact >= n - 1, f"{name} B={batch}: exact counts on {exact}/{n}"
    assert claimed_correct == claimed, "the success flag accepted a wrong count vector"
    assert claimed >= n - 2
    assert len(alpha_errors) >= n - 2 and max(alpha_errors) < 0.02, f"α̂ errors {alpha_errors}"


@pytest.mark.parametrize("batch", [4, 16])
def test_bias_free_batches_never_claim_wrong_counts(batch: int, digits) -> None:  # noqa: ANN001
    """Bias-free heads with B > 1 are the weak case (docs): a claimed success must still be right."""
    model = _model("cnn-nobias", 0, digits)
    rng = np.random.default_rng(batch + 100)
    for alpha in ALPHAS:
        gw, w, kwargs, truth = _batch_case(model, digits, rng, batch, alpha)
        result = recover_batch_labels(gw, w, batch_size=batch, **kwargs)
        assert result.counts.sum() == batch
        assert not result.success or np.array_equal(result.counts, truth)


def test_trained_model_is_reported_not_faked(digits) -> None:  # noqa: ANN001
    """On a trained model p̂ is biased: the attack may fail, but a claimed success must be right."""
    model = _model("cnn", 100, digits)
    rng = np.random.default_rng(3)
    for alpha in (-0.1, 0.1, 0.3):
        for batch in (1, 16):
            gw, w, kwargs, truth = _batch_case(model, digits, rng, batch, alpha)
            result = recover_batch_labels(gw, w, batch_size=batch, **kwargs)
            assert result.counts.sum() == batch
            if result.success:
                assert np.array_equal(result.counts, truth)
            if batch == 1:  # a single sample is exact even on a trained model (Wang et al.'s (2024) closed form)
                assert result.success and np.array_equal(result.counts, truth)
                assert abs(result.alpha - alpha) < 0.02


def test_counts_depend_on_the_gradient_not_on_a_prior(digits) -> None:  # noqa: ANN001
    """Swapping two classes' rows of the gradient must swap the recovered counts."""
    model = _model("cnn", 0, digits)
    gw, w, kwargs, truth = _batch_case(model, digits, np.random.default_rng(7), 16, 0.1)
    perm = np.arange(C)
    i, j = int(np.argmax(truth)), int(np.argmin(truth))
    perm[[i, j]] = perm[[j, i]]
    swapped = recover_batch_labels(
        gw.numpy()[perm], w.detach().numpy()[perm], batch_size=16,
        bias_grad=kwargs["bias_grad"].numpy()[perm], bias=kwargs["bias"].detach().numpy()[perm],
    )
    np.testing.assert_array_equal(swapped.counts, truth[perm])


@pytest.mark.parametrize(
    "weight_grad", [np.zeros((5, 7)), np.full((5, 7), np.nan), np.full((5, 7), np.inf)], ids=["zeros", "nan", "inf"]
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_degenerate_input_fails_cleanly(weight_grad: np.ndarray, with_bias: bool) -> None:
    weight = np.random.default_rng(0).normal(size=(5, 7))
    kwargs = {"bias_grad": np.zeros(5), "bias": np.zeros(5)} if with_bias else {}
    result = recover_batch_labels(weight_grad, weight, batch_size=8, **kwargs)
    assert result.success is False
    assert result.counts.sum() == 8 and np.isfinite(result.alpha)


def test_bad_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="smoothing"):
        recover_batch_labels(np.ones((4, 3)), np.ones((4, 3)), batch_size=2, augmentation="mixup")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size"):
        recover_batch_labels(np.ones((4, 3)), np.ones((4, 3)), batch_size=0)
    with pytest.raises(ConfigError, match="3 classes"):
        recover_batch_labels(np.ones((2, 3)), np.ones((2, 3)), batch_size=2)
    with pytest.raises(ConfigError, match="classes"):
        recover_batch_labels(np.ones((4, 3)), np.ones((4, 2)), batch_size=2)


def test_momentum_weights() -> None:
    np.testing.assert_allclose(momentum_weights(3, 0.9), [2.71, 1.9, 1.0])
    np.testing.assert_allclose(momentum_weights(4, 0.0), np.ones(4))


def _client_update(digits, rng: np.random.Generator, n: int, recipe: ClientRecipe, seed: int, trained_steps: int = 0):  # noqa: ANN001, ANN202
    images, labels = digits
    idx = torch.as_tensor(rng.choice(len(images), n, replace=False))
    torch.manual_seed(0)
    model = _model("cnn", trained_steps, digits) if trained_steps else build_model("cnn", (1, 8, 8), C)
    start = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    ctx = TrainingContext(
        server_round=1, client_id=0, num_samples=n, batch_size=recipe.batch_size, local_epochs=recipe.local_epochs,
        lr=recipe.lr, device=torch.device("cpu"),
    )
    result = train_local(
        model, TensorDataset(images[idx], labels[idx]), recipe.alpha, ctx, Defense(), torch.Generator().manual_seed(seed),
        optimizer_name=recipe.optimizer, max_grad_norm=recipe.max_grad_norm,
    )
    after = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return start, after, result.steps, np.bincount(labels[idx].numpy(), minlength=C)


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_fedavg_one_step_exact_with_unknown_clipping_scale(clip: float, digits) -> None:  # noqa: ANN001
    rng = np.random.default_rng(11)
    exact = 0
    for k, alpha in enumerate(ALPHAS):
        recipe = ClientRecipe(lr=0.05, batch_size=32, local_epochs=1, max_grad_norm=clip, alpha=alpha)
        start, after, steps, truth = _client_update(digits, rng, 32, recipe, seed=k)
        assert steps == 1
        # the server's view: weights, recipe, reported counts — never `truth`
        result = recover_update_labels(
            start, after, recipe, num_examples=32, local_steps=steps, head_names=("head.weight", "head.bias")
        )
        exact += np.array_equal(result.counts, truth) and result.success
        assert result.counts.sum() == 32
        if result.alpha_identifiable:
            assert abs(result.alpha - alpha) < 0.03
    assert exact == len(ALPHAS)


def test_fedavg_several_steps_counts_close_and_honestly_flagged(digits) -> None:  # noqa: ANN001
    """Several momentum steps: counts within about one per class, and never a false claim."""
    rng = np.random.default_rng(5)
    errors = []
    for seed in range(4):
        recipe = ClientRecipe(lr=0.05, batch_size=16, local_epochs=1, max_grad_norm=0.0, alpha=0.1)
        start, after, steps, truth = _client_update(digits, rng, 48, recipe, seed=seed)
        assert steps == 3
        result = recover_update_labels(
            start, after, recipe, num_examples=48, local_steps=steps, head_names=("head.weight", "head.bias")
        )
        assert result.counts.sum() == 48
        if result.success:
            assert np.array_equal(result.counts, truth)
        errors.append(np.abs(result.counts - truth).mean())
    assert np.mean(errors) < 0.6, errors


@pytest.mark.parametrize("trained_steps", [0, 100])
def test_default_recipe_counts_beat_the_uniform_guess(trained_steps: int, digits) -> None:  # noqa: ANN001
    """fedls' default client recipe (batch 16, 2 epochs, momentum, clipping 1.0): ≈ 12 clipped
    momentum steps over reshuffled batches. The counts must beat N/C on average and never claim
    exactness (before the direction estimator: MAE 10–20 per class on trained models)."""
    rng = np.random.default_rng(21 + trained_steps)
    recipe = ClientRecipe(lr=0.05, batch_size=16, local_epochs=2, max_grad_norm=1.0, alpha=0.0)
    errors, uniform = [], []
    for seed in range(6):
        n = int(rng.integers(72, 109))
        start, after, steps, truth = _client_update(digits, rng, n, recipe, seed=seed, trained_steps=trained_steps)
        assert steps > 1
        result = recover_update_labels(
            start, after, recipe, num_examples=n, local_steps=steps, head_names=("head.weight", "head.bias")
        )
        assert result.counts.sum() == n and result.counts.min() >= 0 and result.counts.dtype.kind == "i"
        assert not result.success, "several clipped steps cannot certify exact counts"
        assert "direction_agreement" in result.diagnostics
        errors.append(np.abs(result.counts - truth).mean())
        uniform.append(np.abs(truth - n / C).mean())
    assert np.mean(errors) < 0.8 * np.mean(uniform), (errors, uniform)


def test_direction_counts_follow_the_update_not_a_prior(digits) -> None:  # noqa: ANN001
    """Permuting the classes of a multi-step clipped update permutes the recovered counts."""
    rng = np.random.default_rng(4)
    recipe = ClientRecipe(lr=0.05, batch_size=16, local_epochs=2, max_grad_norm=1.0, alpha=0.1)
    start, after, steps, truth = _client_update(digits, rng, 96, recipe, seed=1)
    names = ("head.weight", "head.bias")
    base = recover_update_labels(start, after, recipe, num_examples=96, local_steps=steps, head_names=names)
    perm = np.random.default_rng(0).permutation(C)
    permute = {k: (v[perm] if k in names else v) for k, v in start.items()}
    permuted_after = {k: (v[perm] if k in names else v) for k, v in after.items()}
    swapped = recover_update_labels(permute, permuted_after, recipe, num_examples=96, local_steps=steps, head_names=names)
    np.testing.assert_array_equal(swapped.counts, base.counts[perm])
    assert np.corrcoef(base.counts, truth)[0, 1] > 0.5


def test_project_counts_onto_the_simplex() -> None:
    from fedls.attacks.gradient.batch_labels import project_counts

    np.testing.assert_array_equal(project_counts(np.array([-3.0, 10.0, 5.0, 8.0]), 20), [0, 9, 4, 7])
    np.testing.assert_array_equal(project_counts(np.array([5.2, 4.9, 4.9, 5.0]), 20), [5, 5, 5, 5])
    out = project_counts(np.array([100.0, -50.0, 0.3]), 7)
    assert out.sum() == 7 and out.min() >= 0 and out[0] == 7


def test_fedavg_adam_and_degenerate_updates_fail_cleanly() -> None:
    rng = np.random.default_rng(0)
    w = {"head.weight": rng.normal(size=(C, 16)), "head.bias": rng.normal(size=C)}
    names = ("head.weight", "head.bias")
    adam = recover_update_labels(w, w, ClientRecipe(optimizer="adam"), num_examples=20, local_steps=2, head_names=names)
    assert not adam.success and "adam" in adam.method.lower() and adam.counts.sum() == 20
    same = recover_update_labels(w, w, ClientRecipe(), num_examples=20, local_steps=2, head_names=names)
    assert not same.success and same.counts.sum() == 20
    nan = {k: np.full_like(v, np.nan) for k, v in w.items()}
    assert not recover_update_labels(w, nan, ClientRecipe(), num_examples=20, local_steps=2, head_names=names).success
    with pytest.raises(ConfigError):
        recover_update_labels(w, w, ClientRecipe(), num_examples=20, local_steps=2, head_names=("fc.weight", None))
