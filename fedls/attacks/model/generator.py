"""The generator interface the attack needs, and the DCGAN prior fedls trains itself.

Struppek et al. (2024) §2.1 / Appx. B.4: PPA decouples the attack from the GAN, so any generator of the
target domain plugs in. fedls only needs :class:`Generator`: a ``latent_dim`` and a call
``G(z) -> images`` in [-1, 1] of the target model's input shape. A StyleGAN2 loaded from a
local file fits by wrapping it (map ``z`` through its mapping network, crop/resize its output
to the target resolution, scale to [-1, 1]).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class Generator(Protocol):
    """Anything that maps latents ``z`` of shape [N, latent_dim] to images [N, C, H, W] in [-1, 1]."""

    latent_dim: int

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


class DCGANGenerator(nn.Module):
    """DCGAN (Radford et al.) for 8–64 px: a 4×4 seed map doubled by transposed convolutions
    until it reaches the next power of two ≥ the image size, then resized to the exact size."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = image_size
        ups = max(1, math.ceil(math.log2(max(image_size, 8) / 4)))
        widths = [max(width // 2**i, 16) for i in range(ups)]
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * 16), nn.BatchNorm1d(widths[0] * 16), nn.ReLU())
        layers: list[nn.Module] = []
        for i in range(ups - 1):
            layers += [
                nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(widths[i + 1]), nn.ReLU()
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self._width0 = widths[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self._width0, 4, 4)
        x = self.body(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x


class DCGANDiscriminator(nn.Module):
    """Mirror of :class:`DCGANGenerator`: strided convolutions down to 4×4, then one logit.
    Also GMI's prior term (Zhang et al. 2020) at attack time."""

    def __init__(self, channels: int, image_size: int, width: int = 64) -> None:
        super().__init__()
        self.image_size = image_size
        self.padded = 2 ** max(3, math.ceil(math.log2(max(image_size, 8))))
        downs = int(math.log2(self.padded // 4))
        widths = [max(width // 2 ** (downs - 1 - i), 16) for i in range(downs)]
        layers: list[nn.Module] = []
        cin = channels
        for i, cout in enumerate(widths):
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.padded:
            x = F.interpolate(x, size=(self.padded, self.padded), mode="bilinear", align_corners=False)
        return self.body(x).squeeze(-1)
