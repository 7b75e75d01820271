"""Stability of an attack's optimisation: cosine similarity of consecutive input gradients.

Seed 001 §4.4, Eq. 4 (Fig. 6b, Fig. 7): at every step t > 1 of an inversion attack,
``S_C(∇L^(t), ∇L^(t-1))`` between the loss gradients with respect to the current inputs.
Stable optimisation keeps the direction (values near 1); frequent changes of direction —
what the paper sees on negative-LS models — give values near 0 or below.

The recorder is attack-agnostic: call :meth:`GradientCosineRecorder.record` with the input
gradient of each step (one row per sample of the batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class GradientCosineRecorder:
    """Per-sample cos(g_t, g_{t-1}) for every step after the first."""

    eps: float = 1e-12
    _previous: torch.Tensor | None = field(default=None, init=False, repr=False)
    _cosines: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)

    def record(self, gradient: torch.Tensor) -> torch.Tensor | None:
        """Add step t's gradients ``(batch, ...)``; return this step's cosines (None at t = 1).

        A zero gradient has no direction; its cosine is reported as 0 (no agreement).
        """
        g = gradient.detach().reshape(gradient.shape[0], -1).to(torch.float64)
        if self._previous is not None and self._previous.shape != g.shape:
            raise ValueError(f"gradient shape changed from {tuple(self._previous.shape)} to {tuple(g.shape)}")
        cos = None
        if self._previous is not None:
            cos = F.cosine_similarity(g, self._previous, dim=1, eps=self.eps)
            self._cosines.append(cos)
        self._previous = g
        return cos

    @property
    def steps(self) -> int:
        """Number of cosines recorded (gradients recorded minus one)."""
        return len(self._cosines)

    def matrix(self) -> torch.Tensor:
        """Cosines as ``(steps, batch)``: row i compares step i+2 with step i+1 (1-based)."""
        if not self._cosines:
            return torch.empty(0, 0, dtype=torch.float64)
        return torch.stack(self._cosines)

    def per_step(self) -> dict[str, list[float]]:
        """Mean and standard deviation over the batch at every step (the curves of Fig. 6b)."""
        m = self.matrix()
        if m.numel() == 0:
            return {"mean": [], "std": []}
        return {"mean": m.mean(dim=1).tolist(), "std": m.std(dim=1, unbiased=False).tolist()}

    def overall(self) -> dict[str, float]:
        """Mean and standard deviation over all steps and samples."""
        m = self.matrix()
        if m.numel() == 0:
            return {"mean": float("nan"), "std": float("nan")}
        return {"mean": float(m.mean()), "std": float(m.std(unbiased=False))}
