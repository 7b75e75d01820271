"""Deterministic seeds for every random stream fedls uses."""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A stable 31-bit seed from integers (run seed, round, client, ...)."""
    rng = np.random.default_rng(list(parts))
    return int(rng.integers(0, 2**31 - 1))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
