"""The Typer application objects and the error boundary shared by every command.

The CLI only parses and delegates: each command module builds a config from its flags and
calls library code. Every error the user can cause — a library error
(:class:`~fedls.errors.FedlsError`) or a flag Click cannot parse (a wrong type, an unknown
option, a missing argument) — becomes one line on stderr and exit code 2, never a traceback
and never Typer's multi-line usage box, so that scripts can rely on both.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ParamSpec, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from fedls.errors import FedlsError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """One line on stderr; ``message`` is shown verbatim (no rich markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (code 2)."""
    print_error(message)
    return typer.Exit(code=2)


def usage_error_line(exc: click.ClickException) -> str:
    """Click's message plus where to look, on one line."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see `{ctx.command_path} --help`)" if ctx is not None else message


class OneLineErrors(TyperGroup):
    """The top-level group: Click's usage errors (exit code 2 already) as one line.

    Typer would print the usage, a hint and a framed panel; a script that greps stderr or a
    user scanning a log needs one line that names the option and the problem."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        def run() -> Any:
            return super(OneLineErrors, self).main(args, prog_name, complete_var, False, windows_expand_args, **extra)

        if not standalone_mode:
            return run()
        try:
            result = run()
        except click.exceptions.NoArgsIsHelpError as exc:
            sys.exit(exc.exit_code)  # `fedls attack` alone: Typer has printed the help; exit 2 as Click does
        except click.ClickException as exc:
            print_error(usage_error_line(exc))
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            print_error("aborted")
            sys.exit(1)
        # without standalone mode Click returns the exit code of typer.Exit (None on success)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="fedls",
    cls=OneLineErrors,
    help="Federated-learning privacy simulator: clients train with label smoothing (or another defense) while "
    "a curious server measures what their updates and the global model leak.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
attack_app = typer.Typer(help="Run the curious server's attacks on saved models.", no_args_is_help=True)
app.add_typer(attack_app, name="attack")


def _print_version(value: bool) -> None:
    if not value:
        return
    from fedls.provenance import provenance

    info = provenance()
    console.print(f"fedls {info['fedls_version']} (git commit {info['git_commit']})", highlight=False)
    raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the fedls version and git commit, then exit.")] = False,
) -> None:
    """Federated-learning privacy simulator: clients train with label smoothing (or another defense) while a
    curious server measures what their updates and the global model leak."""


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
