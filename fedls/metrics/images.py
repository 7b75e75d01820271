"""Image similarity between reconstructions and originals: MSE, PSNR, SSIM.

Images in fedls live in [-1, 1]; every metric here first maps them to [0, 1] so PSNR uses a
data range of 1 and values are comparable with the literature.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from fedls.errors import ConfigError


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise ConfigError(f"image metrics need two [N, C, H, W] batches of one shape (got {tuple(a.shape)} and {tuple(b.shape)})")


def image_mse(recon: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error on [0, 1] images, shape [N]."""
    _check(recon, original)
    return (to_unit(recon) - to_unit(original)).pow(2).flatten(1).mean(1)


def image_psnr(recon: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (data range 1, at most 100), shape [N]."""
    _check(recon, original)
    # Capped at 100 dB so an exact match logs a finite number (JSON and TensorBoard).
    value = peak_signal_noise_ratio(to_unit(recon), to_unit(original), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return value.clamp(max=100.0)


def image_ssim(recon: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, shape [N]. The Gaussian window shrinks (odd, ≤ 11) to fit tiny images
    such as the 8×8 digits."""
    _check(recon, original)
    side = min(recon.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    if kernel < 3:
        raise ConfigError(f"SSIM needs images of at least 3×3 pixels (got {tuple(recon.shape[-2:])})")
    sigma = 1.5 * kernel / 11
    value = structural_similarity_index_measure(
        to_unit(recon), to_unit(original), data_range=1.0, kernel_size=kernel, sigma=sigma, reduction="none"
    )
    # a tuple comes back only with return_full_image / return_contrast_sensitivity, not asked for here
    assert isinstance(value, torch.Tensor)
    return value.reshape(-1)


def image_metrics(recon: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    """Batch means of MSE, PSNR and SSIM."""
    return {
        "mse": float(image_mse(recon, original).mean()),
        "psnr": float(image_psnr(recon, original).mean()),
        "ssim": float(image_ssim(recon, original).mean()),
    }
