"""Defenses: MID's KL term, BiDO's nHSIC, DP-SGD's cross-round accounting, and short training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from fedls.data import DataOptions, load_dataset_cached
from fedls.defenses import TrainingContext, build_defense
from fedls.defenses.bido import gaussian_kernel, linear_kernel, normalized_hsic
from fedls.defenses.dp import DPDefense, epsilon_for
from fedls.defenses.mid import VIBHead, gaussian_kl
from fedls.errors import ConfigError
from fedls.models import build_model
from fedls.training.local import train_local
from fedls.training.seeding import seed_everything


@pytest.fixture(scope="module")
def digits():
    return load_dataset_cached("digits", DataOptions(seed=0))


def small_shard(splits, n: int = 96):
    return (
        splits.train.subset(np.arange(n)) if hasattr(splits.train, "subset") else torch.utils.data.Subset(splits.train, range(n))
    )


def context(round_: int = 1, state: dict | None = None, epochs: int = 1) -> TrainingContext:
    return TrainingContext(
        server_round=round_, client_id=0, num_samples=96, batch_size=16, local_epochs=epochs,
        lr=0.05, device=torch.device("cpu"), state=state if state is not None else {},
    )


# -- MID -----------------------------------------------------------------------------------------
def test_mid_kl_matches_closed_form_and_torch():
    torch.manual_seed(0)
    mu, std = torch.randn(5, 7), torch.rand(5, 7) + 0.1
    closed = (0.5 * (mu**2 + std**2 - 1 - torch.log(std**2))).sum(dim=1).mean()
    reference = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(dim=1).mean()
    assert torch.allclose(gaussian_kl(mu, std), closed, atol=1e-6)
    assert torch.allclose(gaussian_kl(mu, std), reference, atol=1e-5)
    assert float(gaussian_kl(torch.zeros(3, 4), torch.ones(3, 4))) == pytest.approx(0.0, abs=1e-7)


def test_mid_head_samples_in_training_and_uses_mean_in_eval(digits):
    model = build_defense("mid", {"beta": 0.01, "bottleneck": 8}).prepare_model(build_model("cnn", digits.image_shape, 10))
    head = model.head
    assert isinstance(head, VIBHead) and isinstance(head.linear, torch.nn.Linear) and head.linear.in_features == 8
    x = torch.randn(4, *digits.image_shape)
    model.eval()
    assert torch.equal(model(x), model(x))
    mu, _ = head.encode(model.features(x))
    assert torch.allclose(model(x), head.linear(mu))
    model.train()
    with torch.no_grad():  # softplus(s - 5) is small but non-zero: training outputs are noisy
        assert not torch.equal(model(x), model(x))


def test_mid_loss_adds_beta_times_kl(digits):
    defense = build_defense("mid", {"beta": 0.5, "bottleneck": 4})
    model = defense.prepare_model(build_model("cnn", digits.image_shape, 10))
    x, y = torch.randn(6, *digits.image_shape), torch.arange(6)
    torch.manual_seed(1)
    loss, extras = defense.loss(model, x, y, lambda logits: torch.zeros(()))
    assert float(loss.detach()) == pytest.approx(0.5 * extras["mid_kl"], rel=1e-5)
    assert extras["mid_kl"] > 0


# -- BiDO ----------------------------------------------------------------------------------------
def test_nhsic_self_dependence_high_independent_low():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 2, generator=g)
    y = torch.randn(128, 2, generator=g)
    k_x = gaussian_kernel(x, 1.0)
    assert float(normalized_hsic(k_x, k_x)) == pytest.approx(1.0, abs=1e-5)
    assert 0 <= float(normalized_hsic(k_x, gaussian_kernel(y, 1.0))) < 0.05
    # a deterministic function of x stays strongly dependent on it
    assert float(normalized_hsic(k_x, gaussian_kernel(2 * x + 1, 1.0))) > 0.7
    # bounded by 1 for any pair (what keeps gradient ascent on the label term stable)
    z = torch.randn(128, 50, generator=g)
    assert float(normalized_hsic(gaussian_kernel(z, 0.3), gaussian_kernel(x, 5.0))) <= 1.0


def test_bido_keeps_utility_with_paper_lambdas(digits):
    """Regression: an unbounded nHSIC let the −λy·nHSIC(Z, Y) term wreck training (chance accuracy)."""
    from fedls.metrics.utility import evaluate

    defense = build_defense("bido", {})
    model = build_model("cnn", digits.image_shape, 10)
    ctx = TrainingContext(1, 0, 480, 16, 3, 0.05, torch.device("cpu"), {})
    train_local(model, small_shard(digits, 480), 0.0, ctx, defense, seed_everything(0))
    assert evaluate(model, digits.test, torch.device("cpu"))["accuracy"] > 0.7


def test_nhsic_labels_linear_kernel():
    labels = torch.arange(64) % 4
    onehot = torch.nn.functional.one_hot(labels, 4)
    informative = onehot.float() * 3 + 0.01 * torch.randn(64, 4)
    noise = torch.randn(64, 4)
    k_y = linear_kernel(onehot)
    assert float(normalized_hsic(gaussian_kernel(informative, 1.0), k_y)) > 0.8
    assert float(normalized_hsic(gaussian_kernel(noise, 1.0), k_y)) < 0.2


def test_bido_bandwidth_scales_with_dimension():
    x = torch.randn(8, 3)
    wide = x.repeat(1, 100)  # 100× the squared distance and the dimension: same kernel
    assert torch.allclose(gaussian_kernel(x, 2.0), gaussian_kernel(wide, 2.0), atol=1e-5)


def test_bido_loss_terms(digits):
    defense = build_defense("bido", {})
    model = build_model("cnn", digits.image_shape, 10)
    x, y = torch.randn(8, *digits.image_shape), torch.arange(8) % 3  # repeated labels: Y's kernel is informative
    loss, extras = defense.loss(model, x, y, lambda logits: torch.zeros(()))
    expected = 0.05 * extras["bido_hsic_x"] - 0.5 * extras["bido_hsic_y"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert 0 < extras["bido_hsic_x"] <= 3.0 + 1e-5  # three blocks in the small CNN, each nHSIC in [0, 1]
    assert extras["bido_hsic_y"] != 0


# -- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("mid", {"betta": 0.1}, "unknown option"),
        ("mid", {"beta": -1}, "beta: Input should be greater than or equal to 0"),
        ("mid", {"bottleneck": 0}, "bottleneck: Input should be greater than or equal to 1"),
        ("bido", {"lambda_x": "a"}, "lambda_x: Input should be a valid number"),
        ("bido", {"layers": []}, "layers"),
        ("dp", {}, "exactly one"),
        ("dp", {"epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one"),
        ("dp", {"noise_multiplier": 1.0, "delta": 2}, "delta: Input should be less than 1"),
        ("none", {}, None),
    ],
)
def test_option_validation(name, options, match):
    if match is None:
        build_defense(name, options)
        return
    with pytest.raises(ConfigError, match=match):
        build_defense(name, options)


def test_bido_layer_index_out_of_range(digits):
    defense = build_defense("bido", {"layers": [5]})
    model = build_model("mlp", digits.image_shape, 10)
    with pytest.raises(ConfigError, match="hidden blocks"):
        defense.loss(model, torch.randn(4, *digits.image_shape), torch.arange(4), lambda z: z.sum())


# -- DP --------------------------------------------------------------------------------------------
def test_dp_replaces_batchnorm(digits):
    model = build_defense("dp", {"noise_multiplier": 1.0}).prepare_model(build_model("cnn-batchnorm", digits.image_shape, 10))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())


def test_dp_epsilon_composes_across_rounds(digits):
    from opacus.accountants import RDPAccountant

    shard = small_shard(digits, 48)
    state: dict = {}
    epsilons = []
    for round_ in (1, 2, 3):
        defense = build_defense("dp", {"noise_multiplier": 1.1, "max_grad_norm": 1.0})  # fresh per round, like a client
        model = defense.prepare_model(build_model("cnn", digits.image_shape, 10))
        ctx = context(round_, state)
        result = train_local(model, shard, -0.05, ctx, defense, seed_everything(round_))
        epsilons.append(result.diagnostics["epsilon"])
        state = ctx.state
        assert "_module." not in "".join(defense.unwrap_model(model).state_dict())
    assert epsilons[0] > 0 and epsilons[0] < epsilons[1] < epsilons[2]
    steps = 3 * (48 // 16)  # 3 Poisson draws a round (q = 1/3)
    assert state["dp_history"] == [[1.1, 1 / 3, steps]]
    reference = RDPAccountant()
    for _ in range(steps):
        reference.step(noise_multiplier=1.1, sample_rate=1 / 3)
    assert epsilons[-1] == pytest.approx(reference.get_epsilon(1e-5), rel=1e-9)
    assert epsilon_for([(1.1, 1 / 3, steps)], 1e-5) == pytest.approx(epsilons[-1])


def test_dp_target_epsilon_is_reached_at_the_last_planned_round(digits):
    shard = small_shard(digits, 48)
    state: dict = {}
    for round_ in (1, 2):
        defense = build_defense("dp", {"epsilon": 8.0, "delta": 1e-5, "rounds": 2})
        model = defense.prepare_model(build_model("cnn", digits.image_shape, 10))
        ctx = context(round_, state)
        result = train_local(model, shard, 0.1, ctx, defense, seed_everything(round_))
        state = ctx.state
    assert state["dp_noise_multiplier"] > 0
    assert result.diagnostics["epsilon"] == pytest.approx(8.0, rel=0.02)


def test_dp_target_epsilon_without_rounds_is_a_config_error(digits):
    defense = build_defense("dp", {"epsilon": 4.0})
    assert isinstance(defense, DPDefense)
    model = defense.prepare_model(build_model("cnn", digits.image_shape, 10))
    with pytest.raises(ConfigError, match="rounds"):
        train_local(model, small_shard(digits), 0.0, context(), defense, seed_everything(0))


# -- every defense trains with positive and negative smoothing -----------------------------------------
@pytest.mark.parametrize("alpha", [-0.05, 0.1])
@pytest.mark.parametrize(
    ("name", "options"),
    [("mid", {"beta": 0.003}), ("bido", {}), ("dp", {"noise_multiplier": 0.8})],
)
def test_defenses_train_on_digits(digits, name, options, alpha):
    defense = build_defense(name, options)
    model = defense.prepare_model(build_model("cnn", digits.image_shape, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = context()
    result = train_local(model, small_shard(digits), alpha, ctx, defense, seed_everything(0))
    assert math.isfinite(result.loss) and result.steps > 0
    after = defense.unwrap_model(model).state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
