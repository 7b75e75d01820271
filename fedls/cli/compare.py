"""`fedls compare`: run settings that differ only in the defense, then print the results table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedls.cli.app import app, console, err_console, guarded, setup_logging
from fedls.config import RunConfig
from fedls.errors import ConfigError, FedlsError

Opt = typer.Option


@app.command()
@guarded
def compare(
    experiment: Annotated[Optional[Path], Opt("--experiment", "-e", help="Experiment TOML (\\[base] table + \\[\\[setting]] entries); see experiments/.")] = None,
    out: Annotated[Optional[Path], Opt(help="Output folder: one run directory per setting plus results.csv/.md, utility_privacy.png, hparams/. Rerunning resumes. [default: the file's \\[experiment].out, or runs/compare]")] = None,
    setting: Annotated[Optional[list[str]], Opt("--setting", "-s", help="Ad-hoc setting NAME=DEFENSE\\[:key=value,...]\\[@ALPHA], repeatable, e.g. -s base=none -s neg=none@-0.05 -s mid=mid:beta=0.01")] = None,
    baseline: Annotated[Optional[str], Opt(help="Setting the changes are computed against. [default: the first]")] = None,
    config: Annotated[Optional[Path], Opt("--config", help="Ad-hoc mode: TOML with the shared run options (as for `fedls simulate`).")] = None,
    dataset: Annotated[Optional[str], Opt(help="Dataset (overrides the file). [default: digits]")] = None,
    clients: Annotated[Optional[int], Opt(help="Clients (overrides the file).")] = None,
    rounds: Annotated[Optional[int], Opt(help="Rounds (overrides the file).")] = None,
    seed: Annotated[Optional[int], Opt(help="Seed (overrides the file); use a new --out per seed.")] = None,
    device: Annotated[Optional[str], Opt(help="auto, cpu or cuda (overrides the file in both modes).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show fedls' logs.")] = False,
) -> None:
    """Compare defenses on the same data, partition, seed, rounds and attacks (seed 001, Table 1)."""
    from fedls.compare import load_experiment, quick_experiment, run_comparison
    from fedls.compare.table import MISSING

    setup_logging(verbose)
    if (experiment is None) == (not setting) or (experiment is None and len(setting or []) < 2):
        raise ConfigError("pass either --experiment FILE or at least two --setting entries (not both)")
    if experiment is not None:
        plan = load_experiment(experiment, out)
        shared = {"dataset": dataset, "clients": clients, "rounds": rounds, "seed": seed, "device": device}
        plan.settings = [replace(s, config=s.config.with_overrides(**shared).validate()) for s in plan.settings]
    else:
        base = (RunConfig.from_toml(config) if config else RunConfig()).with_overrides(
            dataset=dataset, clients=clients, rounds=rounds, seed=seed, device=device
        )
        plan = quick_experiment(base, list(setting or []), out or Path("runs") / "compare", baseline)
    if baseline is not None and experiment is not None:
        plan.setting(baseline)
        plan.baseline = baseline

    total_rounds = sum(s.config.rounds for s in plan.settings)
    console.print(f"[bold]fedls compare[/] {len(plan.settings)} settings → {plan.out}")
    progress = Progress(
        TextColumn("[bold blue]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
    )
    overall = progress.add_task("", total=total_rounds, label="all settings")
    current = progress.add_task("", total=plan.settings[0].config.rounds, label="setting")
    done_before = {s.name: sum(x.config.rounds for x in plan.settings[:i]) for i, s in enumerate(plan.settings)}

    def on_progress(event) -> None:  # noqa: ANN001 - ProgressEvent
        if event.kind == "setting-start":
            progress.update(current, total=event.rounds, completed=0, label=event.setting, description="starting Flower/Ray…")
        elif event.kind == "round":
            acc = event.record.get("global/accuracy", float("nan"))
            progress.update(current, completed=event.round, description=f"acc {acc:.3f}")
            progress.update(overall, completed=done_before[event.setting] + event.round)
        elif event.kind in ("setting-skipped", "setting-done"):
            progress.update(overall, completed=done_before[event.setting] + event.rounds)
            progress.console.print(f"  {event.setting}: {'already complete, skipped' if event.kind == 'setting-skipped' else 'done in ' + event.message}")
        elif event.kind == "setting-failed":
            progress.console.print(f"  [red]{event.setting} failed:[/] {event.message}")

    try:
        with progress:
            result = run_comparison(plan, on_progress=on_progress)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished settings are kept; rerun the same command to resume")
        raise typer.Exit(code=130) from None

    # the terminal table leaves out metrics no setting measured; results.md/.csv keep every column
    rows = [result.table.cells(row) for row in result.table.rows]
    header = result.table.header()
    keep = [i for i, label in enumerate(header) if i < 4 or any(r[i] != MISSING for r in rows)]
    table = Table(title=f"{plan.name}: changes against {result.table.baseline}")
    for i in keep:
        table.add_column(header[i], justify="left" if header[i] in ("Setting", "Defense", "Status") else "right")
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    console.print(table)
    console.print(f"table: {result.markdown} and {result.csv}\nplot:  {result.plot}\nHParams: tensorboard --logdir {result.hparams}")
    if result.failed:
        raise FedlsError(f"{len(result.failed)} setting(s) failed ({', '.join(o.setting for o in result.failed)}); fix the cause and rerun to resume")
