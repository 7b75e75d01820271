"""Differentiable, seeded batch augmentations: random resized crop and horizontal flip.

PPA (Struppek et al. 2024, Appx. B.4) augments generated images before the target sees them: a mild
random-resized crop while optimising (against adversarial, non-robust solutions) and strong
crops/flips when selecting results. One affine resampling per image keeps it differentiable
and deterministic under a :class:`torch.Generator`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop(
    images: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` (log-uniform),
    flip horizontally with probability ``flip``, and resize back to the input size."""
    n = images.shape[0]
    device = images.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    area = uniform(*scale)
    log_ratio = uniform(math.log(ratio[0]), math.log(ratio[1])).exp()
    width = (area * log_ratio).sqrt().clamp(max=1.0)  # fractions of the side length
    height = (area / log_ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)  # crop centre in [-1, 1] coordinates
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    sign = torch.where(torch.rand(n, generator=generator) < flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def flip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)
