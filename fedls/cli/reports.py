"""`fedls runs [DIR]`, `fedls report RUN` and `fedls contrast A B`: read run and comparison folders back
(library: :mod:`fedls.studies.reports`, :mod:`fedls.compare.contrast`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fedls.cli.app import app, console, fail, guarded
from fedls.cli.options import shown_default
from fedls.studies.reports import fmt


@app.command()
@guarded
def runs(
    folder: Annotated[
        Path,
        typer.Argument(
            help=f"Folder that holds run directories (searched recursively). {shown_default('runs')}", show_default=False
        ),
    ] = Path("runs"),
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (one object per run) instead of a table.")] = False,
) -> None:
    """List run directories with their status and headline utility and leakage."""
    import json

    from fedls.studies.reports import list_runs

    listings = list_runs(folder)
    if json_output:
        typer.echo(json.dumps([item.to_dict() for item in listings], indent=2))
        return
    if not listings:
        console.print(f"no run directories under {folder}")
        return
    table = Table(title=f"runs under {folder}", caption="MI = model inversion; — = not measured in that run")
    for name in ("run", "status", "rounds", "dataset", "α", "defense", "attacks", "accuracy ↑", "label counts ↑", "MI Acc@1 ↑"):
        table.add_column(name, justify="right" if name in ("rounds", "α") or "↑" in name else "left")
    for item in listings:
        table.add_row(item.path, item.status, item.rounds, item.dataset, fmt(item.alpha), item.defense, item.attacks,
                      fmt(item.accuracy), fmt(item.label_count_accuracy), fmt(item.mi_acc1))
    console.print(table)


@app.command()
@guarded
def report(
    run: Annotated[Path, typer.Argument(help="Run directory (a folder with config.toml, e.g. runs/digits-a0-none-s0).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of Markdown.")] = False,
) -> None:
    """One run's utility and leakage against their baselines (round 0, chance, prior-only)."""
    from fedls.studies.reports import report_json, report_markdown, report_run

    result = report_run(run)
    typer.echo(report_json(result) if json_output else report_markdown(result).rstrip("\n"))


@app.command()
@guarded
def contrast(
    first: Annotated[Path, typer.Argument(help="A folder written by `fedls compare` (e.g. one client recipe).")],
    second: Annotated[Path, typer.Argument(help="Another such folder with the same settings (e.g. the other recipe).")],
) -> None:
    """Whether each setting's effect (its change against its study's baseline) differs between two
    comparisons: Welch's t-test over the per-seed changes."""
    from fedls.compare.contrast import contrast_markdown
    from fedls.compare.results import load_results

    if first.resolve() == second.resolve():
        raise fail(f"{first} is given twice; pass two different comparison folders")
    typer.echo(contrast_markdown((str(first), load_results(first)), (str(second), load_results(second))).rstrip("\n"))
