"""Reconstruction from FedAvg updates: the unrolled local steps match the real client exactly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from fedls.attacks.gradient.reconstruction import reconstruct_image
from fedls.attacks.gradient.unrolled import LocalRecipe, reconstruct_from_update, simulate_update
from fedls.defenses import Defense, TrainingContext
from fedls.errors import ConfigError
from fedls.metrics.images import image_metrics
from fedls.models import build_model
from fedls.smoothing import smoothed_targets
from fedls.training.local import train_local


def _client_update(model, image, target, steps, lr, clip):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = TrainingContext(1, 0, 1, batch_size=1, local_epochs=steps, lr=lr, device=torch.device("cpu"))
    train_local(model, TensorDataset(image, target), 0.0, ctx, Defense(), torch.Generator().manual_seed(0), "sgd",
                max_grad_norm=clip)
    after = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(before)
    return before, {k: after[k] - before[k] for k in before}


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_simulated_local_training_equals_the_client(clip: float) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    image = torch.rand(1, 1, 8, 8) * 2 - 1
    target = smoothed_targets(torch.tensor([3]), 10, 0.1)
    start, observed = _client_update(model, image, target, steps=3, lr=0.05, clip=clip)
    params = {n: start[n] for n, _ in model.named_parameters()}
    simulated = simulate_update(model, params, image, target, LocalRecipe(3, 0.05, 0.9, clip))
    for name, delta in simulated.items():
        assert torch.allclose(delta, observed[name], atol=1e-6), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unrolling_beats_the_single_gradient_estimate_for_many_local_steps(seed: int) -> None:
    """8 momentum-SGD steps: −Δθ/(η·steps) is far from any one gradient, the unrolled match is not
    (measured over seeds 0–4: 30–44 dB unrolled vs 12–18 dB from the estimate)."""
    torch.manual_seed(seed)
    model = build_model("mlp", (1, 8, 8), 10)
    image = torch.rand(1, 1, 8, 8) * 2 - 1
    target = smoothed_targets(torch.tensor([7]), 10, 0.1)
    steps, lr = 8, 0.5
    start, observed = _client_update(model, image, target, steps=steps, lr=lr, clip=0.0)
    params = {n: start[n] for n, _ in model.named_parameters()}
    unrolled = reconstruct_from_update(
        model, params, observed, target[0], (1, 8, 8), LocalRecipe(steps, lr, 0.9), steps=150, tv_weight=0.0
    )
    estimate = {n: -observed[n] / (lr * steps) for n in params}
    naive = reconstruct_image(model, estimate, target[0], (1, 8, 8), steps=150, tv_weight=0.0)
    assert image_metrics(unrolled.image, image)["psnr"] > image_metrics(naive.image, image)["psnr"] + 5


def test_bad_recipe_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        LocalRecipe(steps=0, lr=0.1)
