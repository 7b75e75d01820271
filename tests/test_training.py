from __future__ import annotations

import torch

from fedls.data import ArrayDataset
from fedls.defenses import Defense, TrainingContext
from fedls.models import build_model
from fedls.training.local import train_local


def _one_full_batch_step(max_grad_norm: float | None, alpha: float = -0.05) -> float:
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    data = ArrayDataset(torch.randn(16, 1, 8, 8), torch.arange(16) % 10)
    ctx = TrainingContext(1, 0, 16, batch_size=16, local_epochs=1, lr=1.0, device=torch.device("cpu"))
    train_local(model, data, alpha, ctx, Defense(), torch.Generator().manual_seed(0), "sgd", max_grad_norm=max_grad_norm)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_gradient_clipping_bounds_a_step() -> None:
    # one SGD step with lr 1 moves the weights by exactly the (clipped) gradient norm
    assert _one_full_batch_step(0.01) <= 0.01 + 1e-6
    assert _one_full_batch_step(None) > 0.05


def test_soft_targets_train_without_smoothing_on_top() -> None:
    """Mixup probes hand ready-made soft targets to the trainer: they are used as they are."""
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 3)
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    data = torch.utils.data.TensorDataset(torch.randn(2, 1, 8, 8), targets)
    ctx = TrainingContext(1, 0, 2, batch_size=2, local_epochs=200, lr=0.05, device=torch.device("cpu"))
    train_local(model, data, -0.3, ctx, Defense(), torch.Generator().manual_seed(0), "adam")
    probs = torch.softmax(model(data.tensors[0]), -1)
    assert torch.allclose(probs, targets, atol=0.05)
