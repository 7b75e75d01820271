"""`fedls compare`: run settings that differ only in the defense, once per seed, then print the results table."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedls.cli.app import app, console, err_console, guarded, setup_logging
from fedls.errors import FedlsError

Opt = typer.Option


@app.command()
@guarded
def compare(
    experiment: Annotated[Optional[Path], Opt(
        "--experiment", "-e",
        help="Experiment TOML (\\[experiment], \\[base] table + \\[\\[setting]] entries); see experiments/.")] = None,
    out: Annotated[Optional[Path], Opt(
        help="Output folder: <setting>/seed-<n> run directories plus results.csv/.md, utility_privacy.png, comparison.json, "
        "hparams/. Rerunning resumes; a folder that fedls compare did not write is refused unless empty. "
        "\\[default: the file's \\[experiment].out, or runs/compare]")] = None,
    setting: Annotated[Optional[list[str]], Opt(
        "--setting", "-s",
        help="Ad-hoc setting NAME=DEFENSE\\[:key=value,...]\\[@ALPHA], repeatable, "
        "e.g. -s base=none -s neg=none@-0.05 -s mid=mid:beta=0.01")] = None,
    baseline: Annotated[Optional[str], Opt(
        help="Setting the changes and tests are computed against. \\[default: the first]")] = None,
    config: Annotated[Optional[Path], Opt(
        "--config", help="Ad-hoc mode: TOML with the shared run options (as for `fedls simulate`).")] = None,
    seeds: Annotated[Optional[str], Opt(
        help="Run every setting once per seed, e.g. 0,1,2,3,4 (overrides the file's \\[experiment].seeds); "
        "the table reports mean ± sd, 95 % intervals and paired tests.")] = None,
    dataset: Annotated[Optional[str], Opt(help="Dataset (overrides the file). \\[default: digits]")] = None,
    clients: Annotated[Optional[int], Opt(help="Clients (overrides the file).")] = None,
    rounds: Annotated[Optional[int], Opt(help="Rounds (overrides the file).")] = None,
    seed: Annotated[Optional[int], Opt(help="A single seed (overrides the file); --seeds for several.")] = None,
    device: Annotated[Optional[str], Opt(help="auto, cpu or cuda (overrides the file in both modes).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show fedls' logs.")] = False,
) -> None:
    """Compare defenses on the same data, partition, seeds, rounds and attacks (Struppek et al. 2024, Table 1)."""
    from fedls.compare import CompareOptions, check_comparison, plan_comparison, run_comparison
    from fedls.compare.table import MISSING

    setup_logging(verbose)
    flags: dict[str, Any] = {
        "experiment": experiment, "settings": setting or [], "out": out, "baseline": baseline, "config": config,
        "seeds": seeds, "dataset": dataset, "clients": clients, "rounds": rounds, "seed": seed, "device": device,
    }
    plan = plan_comparison(CompareOptions.parse({k: v for k, v in flags.items() if v is not None}, "compare"))
    checked = check_comparison(plan)  # the folder, finished runs and every setting on this machine: nothing written yet

    runs = list(plan.runs())
    total_rounds = sum(config.rounds for _, _, config in runs)
    console.print(f"[bold]fedls compare[/] {len(plan.settings)} settings × {len(plan.seeds)} seed(s) → {plan.out}")
    progress = Progress(
        TextColumn("[bold blue]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
    )
    overall = progress.add_task("", total=total_rounds, label="all runs")
    current = progress.add_task("", total=runs[0][2].rounds, label="run")
    done_before = [sum(c.rounds for _, _, c in runs[:i]) for i in range(len(runs))]

    def on_progress(event) -> None:  # noqa: ANN001 - ProgressEvent
        label = f"{event.setting} s{event.seed}"
        if event.kind == "setting-start":
            progress.update(current, total=event.rounds, completed=0, label=label, description="starting Flower/Ray…")
        elif event.kind == "round":
            acc = event.record.get("global/accuracy", float("nan"))
            progress.update(current, completed=event.round, description=f"acc {acc:.3f}")
            progress.update(overall, completed=done_before[event.index] + event.round)
        elif event.kind in ("setting-skipped", "setting-done"):
            progress.update(overall, completed=done_before[event.index] + event.rounds)
            done = "already complete, skipped" if event.kind == "setting-skipped" else "done in " + event.message
            progress.console.print(f"  {label}: {done}")
        elif event.kind == "setting-failed":
            progress.console.print(f"  [red]{escape(label)} failed:[/] {escape(event.message)}")

    try:
        with progress:
            result = run_comparison(checked, on_progress=on_progress, command=shlex.join(["fedls", *sys.argv[1:]]))
    except KeyboardInterrupt:
        err_console.print("interrupted: finished runs are kept; rerun the same command to resume")
        raise typer.Exit(code=130) from None

    # the terminal table leaves out metrics no setting measured; results.md/.csv keep every column
    rows = [result.table.cells(row) for row in result.stats.rows]
    header = result.table.header()
    keep = [i for i, label in enumerate(header) if i < 4 or any(r[i] != MISSING for r in rows)]
    table = Table(title=f"{plan.name}: mean ± sd over seeds (change against {result.table.baseline}; * = p < 0.05, paired t)")
    for i in keep:
        table.add_column(header[i], justify="left" if header[i] in ("Setting", "Defense", "Seeds") else "right")
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    console.print(table)
    console.print(
        f"table: {result.markdown} and {result.csv}\nplot:  {result.plot}\nHParams: tensorboard --logdir {result.hparams}"
    )
    if result.failed:
        names = ", ".join(f"{o.setting} seed {o.seed}" for o in result.failed)
        raise FedlsError(f"{len(result.failed)} run(s) failed ({names}); fix the cause and rerun to resume")
