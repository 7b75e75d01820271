"""Leakage observers of the curious server: each composes an attack with its scorer.

Each kind registers under the name of its :class:`~fedls.config.RunConfig` section
(``gradient_attack``, ``model_attack``) with two functions: ``validate`` parses the section
(and checks it against the dataset) before anything is written or Ray starts, ``build``
makes the observer once the run starts. ``RunConfig.attacks`` switches the kinds on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.federation.observers.base import RoundLog, RoundObserver
from fedls.registry import Registry

TaskProgress = Callable[[str, int, int], None]  # (task, done, total)


@dataclass(frozen=True)
class ObserverKind:
    """``warm`` (optional) builds what the observer caches — e.g. model inversion's prior and
    judge — before the run starts, so first use shows its progress instead of stalling a round."""

    validate: Callable[[RunConfig, DatasetSplits], None]
    build: Callable[[RunConfig, DatasetSplits, torch.device], RoundObserver]
    warm: Callable[[RunConfig, DatasetSplits, torch.device, TaskProgress | None], None] | None = None


OBSERVERS: Registry[ObserverKind] = Registry("attack section")
SWITCHES = {"gradient_attack": RunConfig.gradient_attack_on, "model_attack": RunConfig.model_attack_on}


def enabled(config: RunConfig) -> list[str]:
    """The attack sections this run switches on, in a fixed order."""
    return [name for name, on in SWITCHES.items() if on(config)]


def validate_attack_options(config: RunConfig, splits: DatasetSplits) -> None:
    """Parse every attack section now — switched on or not, a typo is a typo — so that a bad
    option fails before a run starts."""
    for name in SWITCHES:
        OBSERVERS.get(name).validate(config, splits)


def warm_caches(config: RunConfig, splits: DatasetSplits, device: torch.device, progress: TaskProgress | None = None) -> None:
    """Train (or load) everything the switched-on observers cache, before Ray starts."""
    for name in enabled(config):
        warm = OBSERVERS.get(name).warm
        if warm is not None:
            warm(config, splits, device, progress)


def build_observers(config: RunConfig, splits: DatasetSplits, device: torch.device) -> list[RoundObserver]:
    return [OBSERVERS.get(name).build(config, splits, device) for name in enabled(config)]


from fedls.federation.observers import registrations as _registrations  # noqa: E402,F401  (fills OBSERVERS)

__all__ = [
    "OBSERVERS", "ObserverKind", "RoundLog", "RoundObserver", "TaskProgress", "build_observers", "enabled",
    "validate_attack_options", "warm_caches",
]
