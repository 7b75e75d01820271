"""The last-layer gradient identities that soft-label recovery relies on (Wang et al. 2024, §3)."""

from __future__ import annotations

import pytest
import torch

from fedls.models import build_model
from fedls.smoothing import soft_target_cross_entropy


@pytest.mark.parametrize("name", ["cnn", "cnn-nobias", "mlp"])
def test_head_gradient_identities(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, (1, 8, 8), 10).double()
    image = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 2 - 1
    target = 0.8 * torch.nn.functional.one_hot(torch.tensor([3]), 10).double() + 0.02
    loss = soft_target_cross_entropy(model(image), target)
    loss.backward()
    with torch.no_grad():
        x = model.features(image)[0]
        p = torch.softmax(model(image), -1)[0]
    gw = model.head.weight.grad
    # ∇W = (p − y) xᵀ: every row is a multiple of x, and the rows sum to zero.
    torch.testing.assert_close(gw, torch.outer(p - target[0], x), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gw.sum(0), torch.zeros_like(x), atol=1e-12, rtol=0)
    assert torch.linalg.matrix_rank(gw, atol=1e-9) == 1
    if model.head.bias is not None:
        torch.testing.assert_close(model.head.bias.grad, p - target[0], rtol=1e-9, atol=1e-12)
    else:
        assert name == "cnn-nobias"
