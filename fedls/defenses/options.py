"""Validation of a defense's options table: unknown keys and bad ranges become one-line errors."""

from __future__ import annotations

from typing import Any

from fedls.errors import ConfigError


def check_keys(defense: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"defense {defense!r}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def number(defense: str, options: dict[str, Any], key: str, default: float, low: float | None = None,
           high: float | None = None, low_open: bool = False) -> float:
    """A real-valued option in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"defense {defense!r}: option {key} must be a number (got {value!r})")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "(" if low_open else "["
        raise ConfigError(f"defense {defense!r}: option {key}={value:g} is out of range {lo}{low}, {high}]; pick a value inside it")
    return value


def whole(defense: str, options: dict[str, Any], key: str, default: int, low: int = 1) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"defense {defense!r}: option {key} must be a whole number >= {low} (got {value!r})")
    return value
