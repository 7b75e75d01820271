"""The curious server's attacks, plugged into the simulation as round observers.

Each attack family registers a factory under the name of its :class:`~fedls.config.RunConfig`
section (``gradient_attack``, ``model_attack``); a non-empty section switches it on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.registry import Registry
from strategies.observers import RoundObserver

ObserverBuilder = Callable[[dict[str, Any], RunConfig, DatasetSplits, torch.device], RoundObserver]
OBSERVERS: Registry[ObserverBuilder] = Registry("attack section")


def validate_attack_options(config: RunConfig) -> None:
    """Parse every switched-on attack section now, so that a bad option fails before a run starts."""
    from fedls.attacks.gradient.options import GradientAttackOptions
    from fedls.attacks.model.config import ModelAttackOptions

    if config.gradient_attack:
        GradientAttackOptions.from_dict(config.gradient_attack)
    if config.model_attack:
        ModelAttackOptions.from_dict(config.model_attack)


def build_observers(config: RunConfig, splits: DatasetSplits, device: torch.device) -> list[RoundObserver]:
    """Observers for every attack section the config switches on (in a fixed order)."""
    sections = {"gradient_attack": config.gradient_attack, "model_attack": config.model_attack}
    return [OBSERVERS.get(name)(options, config, splits, device) for name, options in sections.items() if options]
from fedls.attacks.gradient import observer as _gradient_observer  # noqa: E402,F401  (registers "gradient_attack")
from fedls.attacks.model import observer as _model_observer  # noqa: E402,F401  (registers "model_attack")
