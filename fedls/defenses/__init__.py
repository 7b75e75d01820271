"""Defenses (training recipes) by name; each composes with label smoothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fedls.defenses.base import Defense, TrainingContext
from fedls.registry import Registry

DefenseFactory = Callable[[dict[str, Any]], Defense]
DEFENSES: Registry[DefenseFactory] = Registry("defense")
DEFENSES.register("none")(lambda options: Defense())

from fedls.defenses import bido, dp, mid  # noqa: E402,F401  (register the defenses)


def build_defense(name: str, options: dict[str, Any] | None = None) -> Defense:
    return DEFENSES.get(name)(dict(options or {}))


__all__ = ["DEFENSES", "Defense", "TrainingContext", "build_defense"]
