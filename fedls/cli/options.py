"""CLI options generated from the option schema (:mod:`fedls.schema`): one declaration per option.

A field's ``description`` becomes the flag's help, its default is shown as ``[default: …]``
(escaped, because Typer's rich markup would swallow it as a style tag), a ``Literal`` becomes
a choice list, and the ``panel`` in ``json_schema_extra`` becomes the help panel. Flags default
to ``None`` = "not given", so that a flag overrides a ``--config`` file only when it is passed;
the shown default is the schema's.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import click
import typer
from pydantic.fields import FieldInfo
from rich.markup import escape

from fedls.schema import Options

SCALARS = (int, float, str)


def default_text(value: Any) -> str:
    """How a default reads in help: TOML-like, so it can be pasted back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def shown_default(text: str) -> str:
    """``[default: text]`` escaped for Typer's rich markup."""
    return f"\\[default: {escape(text)}]"


def field_help(schema: type[Options], name: str, default: str | None = None, prefix: str = "") -> str:
    """The declared help of ``schema.name`` with its default (or ``default`` when the field's
    own default is None and the real one is decided elsewhere), after ``prefix`` (context the
    flag adds, e.g. which table the option belongs to)."""
    info: FieldInfo = schema.model_fields[name]
    text = prefix + escape((info.description or "").rstrip("."))
    value = info.get_default(call_default_factory=True)
    if value is not None and value != {} and value != []:
        default = default_text(value)
    return f"{text}. {shown_default(default)}" if default is not None else f"{text}."


def field_panel(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return str(extra["panel"]) if isinstance(extra, Mapping) and "panel" in extra else None


def scalar_type(annotation: Any) -> tuple[type, tuple[str, ...] | None] | None:
    """``(python type, choices)`` of a field a single flag can carry; None for tables and lists."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return scalar_type(rest[0]) if len(rest) == 1 else None
    if typing.get_origin(annotation) is Literal:
        return str, tuple(str(a) for a in args)
    if annotation is bool:
        return None  # on/off options of a schema are written in a TOML table
    return (annotation, None) if annotation in SCALARS else None


def click_type(info: FieldInfo, python_type: type, choices: tuple[str, ...] | None) -> click.ParamType | None:
    """The Click type that checks a flag as the schema will: choices, the declared range, and
    finite floats, so that the error names the flag the user typed (``--lr``), not the key."""
    if choices:
        return click.Choice(choices)
    if python_type not in (int, float):
        return None
    bounds: dict[str, Any] = {}
    for rule in info.metadata:
        for attr, key, is_open in (("ge", "min", False), ("gt", "min", True), ("le", "max", False), ("lt", "max", True)):
            if getattr(rule, attr, None) is not None:
                bounds[key] = getattr(rule, attr)
                bounds[f"{key}_open"] = is_open
    return FiniteFloat(**bounds) if python_type is float else click.IntRange(**bounds)


def field_option(schema: type[Options], name: str, *decls: str, panel: str | None = None, hidden: bool = False,
                 default: str | None = None, prefix: str = "") -> tuple[type, typer.models.OptionInfo]:
    """The Typer annotation parts of a flag that sets ``schema.name``."""
    info = schema.model_fields[name]
    kind = scalar_type(info.annotation)
    if kind is None:
        raise TypeError(f"{schema.__name__}.{name} is not a scalar option")
    python_type, choices = kind
    option = typer.Option(
        *(decls or ("--" + name.replace("_", "-"),)),
        help=field_help(schema, name, default, prefix),
        rich_help_panel=panel or field_panel(info),
        show_default=False,  # the default is part of the help text (the flag's own default is None)
        click_type=click_type(info, python_type, choices),
        hidden=hidden,
    )
    return python_type, option


def schema_option(schema: type[Options], name: str, *decls: str, panel: str | None = None,
                  default: str | None = None) -> typer.models.OptionInfo:
    """A Typer option for ``Annotated[Optional[T], schema_option(...)] = None`` parameters."""
    return field_option(schema, name, *decls, panel=panel, default=default)[1]


@dataclass(frozen=True)
class Flag:
    """One generated flag: which schema field it sets and where the value goes in the nested
    run-config table (``()`` = a top-level key, ``("model_attack", "ppa")`` = a section)."""

    param: str
    schema: type[Options]
    field: str
    section: tuple[str, ...] = ()
    decls: tuple[str, ...] = ()
    panel: str | None = None
    default: str | None = None  # shown when the field's own default is None
    prefix: str = ""

    def parameter(self) -> inspect.Parameter:
        python_type, option = field_option(self.schema, self.field, *self.decls, panel=self.panel, default=self.default,
                                           prefix=self.prefix)
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[Optional[python_type], option])


def schema_flags(schema: type[Options], skip: Sequence[str] = ()) -> list[Flag]:
    """A flag for every scalar field of ``schema`` (declaration order), named after the field."""
    return [Flag(name, schema, name) for name, info in schema.model_fields.items()
            if name not in skip and scalar_type(info.annotation) is not None]


def extra_parameter(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def nest(flags: Sequence[Flag], values: Mapping[str, Any]) -> dict[str, Any]:
    """The nested table of every flag that was given (not None)."""
    table: dict[str, Any] = {}
    for flag in flags:
        value = values.get(flag.param)
        if value is None:
            continue
        node = table
        for section in flag.section:
            node = node.setdefault(section, {})
        node[flag.field] = value
    return table


def with_signature(fn: Callable[..., Any], parameters: Sequence[inspect.Parameter]) -> Callable[..., Any]:
    """Give ``fn(**flags)`` the generated keyword parameters Typer reads its options from."""
    setattr(fn, "__signature__", inspect.Signature(list(parameters)))  # noqa: B010 - functions declare no such attribute
    fn.__annotations__ = {p.name: p.annotation for p in parameters}
    return fn


class FiniteFloat(click.FloatRange):
    """A float flag that refuses NaN and ±inf (they pass every ``min``/``max`` comparison)."""

    name = "float"

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "finite"  # Click would write "x<=None"
        return super()._describe_range()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
