"""What the server can read off a client update: the head's gradient, exact or estimated.

FedSGD probe: the client sends the gradient itself. FedAvg: the server only has the
weights after local training, so it estimates the gradient as ``−Δθ / (η·steps)``
(the single-update attacks of Wang et al. 2024 applied to FL). The estimate is exact for one SGD step
without momentum and degrades with more steps and larger batches, which the benchmark
(``scripts/bench_label_recovery.py``) measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from fedls.errors import ConfigError


@dataclass(frozen=True)
class HeadGradient:
    """The last linear layer's parameters and their (estimated) gradient, in float64."""

    weight: np.ndarray
    weight_grad: np.ndarray
    bias: np.ndarray | None = None
    bias_grad: np.ndarray | None = None


def head_parameter_names(model: nn.Module) -> tuple[str, str | None]:
    """State-dict names of the head's weight and bias (``None`` for a bias-free head)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError(
            f"gradient inversion needs a model whose last layer `head` is nn.Linear (got {type(head).__name__}); "
            "defenses that replace the head (e.g. MID) are not supported by this attack"
        )
    prefix = next(name for name, module in model.named_modules() if module is head)
    return f"{prefix}.weight", (f"{prefix}.bias" if head.bias is not None else None)


def estimate_gradient(
    before: dict[str, np.ndarray], after: dict[str, np.ndarray], lr: float, steps: int
) -> dict[str, np.ndarray]:
    """FedAvg gradient estimate ``−(θ_after − θ_before) / (η·steps)`` for every shared parameter."""
    if not lr > 0:
        raise ConfigError(f"the declared learning rate must be > 0 to estimate gradients (got {lr})")
    if steps < 1:
        raise ConfigError(f"a client must report at least one local step to estimate its gradient (got {steps})")
    scale = 1.0 / (lr * steps)
    return {
        name: -(np.asarray(after[name], dtype=np.float64) - np.asarray(value, dtype=np.float64)) * scale
        for name, value in before.items()
        if name in after and np.issubdtype(np.asarray(value).dtype, np.floating)
    }


def head_gradient(
    weights: dict[str, np.ndarray], gradient: dict[str, np.ndarray], names: tuple[str, str | None]
) -> HeadGradient:
    """Pick the head's parameters (at the weights the server sent) and gradient out of name → array maps."""
    weight_name, bias_name = names
    if weight_name not in gradient or weight_name not in weights:
        raise ConfigError(f"the update has no gradient for {weight_name}; does the model match the run's config?")
    as64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    bias = bias_grad = None
    if bias_name is not None and bias_name in gradient and bias_name in weights:
        bias, bias_grad = as64(weights[bias_name]), as64(gradient[bias_name])
    return HeadGradient(as64(weights[weight_name]), as64(gradient[weight_name]), bias, bias_grad)
