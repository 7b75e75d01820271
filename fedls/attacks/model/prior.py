"""The server's generative prior: a DCGAN trained on the public auxiliary images only.

Struppek et al. (2024) §2.1 (generative MIAs learn an image prior from public data) and Appx. B.4 (PPA
plugs any pre-trained GAN in). Labels of the public split are never read. A trained prior is
cached on disk and reused across runs. Its quality is scored by the judge
(:func:`fedls.metrics.inversion.prior_quality`): a noisy prior can fool a judge with textures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from fedls.attacks.model.config import PriorOptions, config_hash
from fedls.attacks.model.generator import DCGANDiscriminator, DCGANGenerator, Generator
from fedls.cache import cache_path, dataset_fingerprint, load_cached, save_cached
from fedls.data.base import ImageDataset, chw_shape
from fedls.errors import CheckpointError, DataError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Prior:
    """A generator (and, for fedls' own DCGAN, its discriminator for GMI) plus provenance."""

    generator: Generator
    discriminator: torch.nn.Module | None = None
    source: str = "user"
    cache_file: Path | None = None
    info: dict[str, float] = field(default_factory=dict)


def public_images(public: ImageDataset) -> torch.Tensor:
    """All public images as one float tensor in [-1, 1]; labels are dropped here on purpose."""
    images = getattr(public, "images", None)
    if isinstance(images, torch.Tensor):
        return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
    return torch.stack([torch.as_tensor(public[i][0]) for i in range(len(public))]).float()


def build_dcgan(config: PriorOptions, image_shape: tuple[int, int, int]) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    channels, size, _ = image_shape
    return (
        DCGANGenerator(config.latent_dim, channels, size, config.width),
        DCGANDiscriminator(channels, size, config.width),
    )


def train_prior(
    images: torch.Tensor,
    config: PriorOptions,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> Prior:
    """Train a DCGAN on ``images`` ([N, C, H, W] in [-1, 1], no labels) with the
    non-saturating GAN loss and Adam (lr 2e-4, β₁ 0.5), seeded for CPU determinism."""
    generator, discriminator, info = _train_dcgan(images, config, device, progress)
    return Prior(generator, discriminator, source="dcgan", info=info)


def _train_dcgan(
    images: torch.Tensor, config: PriorOptions, device: torch.device | str, progress: Progress | None
) -> tuple[DCGANGenerator, DCGANDiscriminator, dict[str, float]]:
    """:func:`train_prior`'s work: the trained generator and discriminator and the final losses."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise DataError("the prior needs at least 2 public images of shape [N, C, H, W]; check the dataset's public split")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    generator, discriminator = build_dcgan(config, chw_shape(images))
    generator.to(device).train()
    discriminator.to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    rng = torch.Generator().manual_seed(config.seed)
    data = images.to(device)
    batch = min(config.batch_size, data.shape[0])
    for step in range(config.steps):
        real = data[torch.randint(0, data.shape[0], (batch,), generator=rng).to(device)]
        z = torch.randn(batch, config.latent_dim, generator=rng).to(device)
        fake = generator(z)
        # discriminator: real → 1, fake → 0
        opt_d.zero_grad(set_to_none=True)
        d_loss = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
        d_loss.backward()
        opt_d.step()
        # generator: non-saturating loss −log D(G(z))
        opt_g.zero_grad(set_to_none=True)
        g_loss = F.softplus(-discriminator(fake)).mean()
        g_loss.backward()
        opt_g.step()
        if progress is not None:
            progress(step + 1, config.steps)
    generator.eval()
    discriminator.eval()
    info = {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}
    return generator, discriminator, info


def prior_cache_key(
    dataset_name: str, public: ImageDataset, image_shape: tuple[int, int, int], config: PriorOptions
) -> dict[str, object]:
    return {
        "kind": "prior",
        "dataset": dataset_name,
        "public": dataset_fingerprint(public, with_labels=False),
        "shape": list(image_shape),
        "seed": config.seed,
        "config": config_hash(config),
    }


def load_or_train_prior(
    dataset_name: str,
    public: ImageDataset,
    image_shape: tuple[int, int, int],
    config: PriorOptions,
    cache_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    retrain: bool = False,
) -> Prior:
    """The cached prior for (dataset, public split, resolution, seed, config), trained on a miss."""
    path = cache_path(cache_dir, "priors", prior_cache_key(dataset_name, public, image_shape, config))
    states = None if retrain else load_cached(path)
    generator, discriminator = build_dcgan(config, image_shape)
    if states is not None:
        try:
            generator.load_state_dict(states["generator"])
            discriminator.load_state_dict(states["discriminator"])
        except (KeyError, RuntimeError):
            raise CheckpointError(f"cached prior {path} does not fit this config; delete the file to retrain") from None
        generator.eval()
        discriminator.eval()
        return Prior(generator.to(device), discriminator.to(device), source="dcgan", cache_file=path)
    log.info("training the generative prior on %d public images (%d steps)", len(public), config.steps)
    generator, discriminator, info = _train_dcgan(public_images(public), config, device, progress)
    meta = {"dataset": dataset_name, "image_shape": list(image_shape), "config": config.model_dump(mode="json"), **info}
    save_cached(path, {"generator": generator.state_dict(), "discriminator": discriminator.state_dict()}, meta)
    return Prior(generator, discriminator, source="dcgan", cache_file=path, info=info)


def load_generator_file(path: Path, config: PriorOptions, image_shape: tuple[int, int, int]) -> Prior:
    """A prior saved by ``fedls prior train`` (or any file with a matching ``generator`` state_dict)."""
    states = load_cached(path)
    if states is None:
        raise CheckpointError(f"generator file {path} does not exist; check the path")
    generator, discriminator = build_dcgan(config, image_shape)
    try:
        generator.load_state_dict(states["generator"])
        if "discriminator" in states:
            discriminator.load_state_dict(states["discriminator"])
    except (KeyError, RuntimeError):
        raise CheckpointError(
            f"{path} is not a DCGAN prior for this config/resolution; pass matching [model_attack.prior] options"
        ) from None
    generator.eval()
    discriminator.eval()
    return Prior(generator, discriminator if "discriminator" in states else None, source=str(path), cache_file=path)


@torch.no_grad()
def sample_prior(prior: Prior, n: int, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    z = torch.randn(n, prior.generator.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return prior.generator(z).clamp(-1, 1).cpu()
