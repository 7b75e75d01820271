"""The Typer application objects and the error boundary shared by every command.

The CLI only parses and delegates: each command module builds a config from its flags and
calls library code. Library errors (:class:`~fedls.errors.FedlsError`) become one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from fedls.errors import FedlsError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="fedls",
    help="Federated-learning privacy simulator: label smoothing vs. gradient and model inversion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
attack_app = typer.Typer(help="Run the curious server's attacks on saved models.", no_args_is_help=True)
app.add_typer(attack_app, name="attack")

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (code 2)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except FedlsError as exc:
            raise fail(str(exc)) from None

    return wrapper


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
