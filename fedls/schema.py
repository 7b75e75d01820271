"""The one mechanism behind every option table: pydantic models with ``extra="forbid"``.

Every table a user can write — the run config, each attack section and its nested sections,
defense options, central DP, experiment files, analysis configs — is a :class:`Options`
subclass. Types, ranges (``Field(ge=..., le=...)``) and help text are declared once, on the
field; :meth:`Options.parse` turns pydantic's multi-line report into one line that names the
table, the key and the fix, raised as :class:`~fedls.errors.ConfigError` (exit code 2).
Keys may be written with ``-`` or ``_`` (TOML files and Flower's run config use dashes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.fields import FieldInfo

from fedls.errors import ConfigError


def normalise_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """``local-epochs`` and ``local_epochs`` name the same option."""
    return {str(key).replace("-", "_"): value for key, value in values.items()}


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def one_line(error: ValidationError, table: str) -> str:
    """The first problem of a pydantic report as one actionable line."""
    first = error.errors(include_url=False)[0]
    where = _location(first["loc"])
    key = f"{table}: {where}" if where else table
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown option; check the spelling (see --help or the docs)"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, Mapping) else f" (got {got!r})"
    return f"{key}: {message}{shown}"


class Options(BaseModel):
    """Base of every option table: unknown keys are errors, values are checked on assignment,
    NaN and ±inf are refused wherever a number is expected (``nan`` passes pydantic's
    ``ge``/``le``, and an unbounded ``inf`` learning rate or α would reach the clients)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @classmethod
    def parse(cls, values: Mapping[str, Any] | None, table: str) -> Self:
        """Validate ``values`` (a TOML table, flags, a wire record) or raise a one-line ConfigError."""
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{table} must be a table of options (got {values!r})")
        try:
            return cls.model_validate(normalise_keys(values))
        except ValidationError as exc:
            raise ConfigError(one_line(exc, table)) from None

    def replace(self, table: str, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied (a frozen model cannot be edited)."""
        return type(self).parse({**self.model_dump(), **changes}, table)

    @classmethod
    def help_for(cls, name: str) -> str:
        """The declared help of one option with its default, for generated CLI help."""
        info: FieldInfo = cls.model_fields[name]
        text = info.description or ""
        default = info.get_default(call_default_factory=True)
        if default is None or isinstance(default, (dict, list)):
            return text
        return f"{text} \\[default: {default}]".strip()
