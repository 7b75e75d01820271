"""`fedls attack model`: model inversion (PPA, Struppek et al. (2024) §4.4) on a finished run's global model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedls.attacks.model.config import PPAOptions, PriorOptions
from fedls.cli.app import attack_app, console, guarded, setup_logging
from fedls.cli.options import schema_option, shown_default
from fedls.config import parse_assignment
from fedls.errors import ConfigError
from fedls.metrics.judge import JudgeOptions

Opt = typer.Option
Arg = typer.Argument


def parse_extra(pairs: list[str], example: str = "--option ppa.selection_augmentations=40") -> dict[str, Any]:
    """``KEY=VALUE`` pairs, ``KEY`` dotted into the nested sections (``ppa.selection_augmentations=40``);
    values are TOML scalars or arrays where they parse, else text."""
    table: dict[str, Any] = {}
    flag = example.split()[0]
    for pair in pairs:
        key, value = parse_assignment(pair, example)
        *sections, name = key.split(".")
        node = table
        for section in sections:
            child = node.setdefault(section, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{flag} {key}: {section} is an option, not a section")
            node = child
        node[name] = value
    return table


def parse_classes(text: str | None, flag: str = "--classes") -> int | list[int] | None:
    """``all``, a count (``5``: random subset) or a list (``0,3,7``)."""
    if text is None:
        return None
    if text == "all":
        return 0
    try:
        return [int(c) for c in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise ConfigError(f"{flag} takes all, a number or a comma-separated list (got {text!r})") from None


def attack_options(option: list[str] | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    """The nested ``model_attack`` table from CLI flags grouped by section (``top`` = the table
    itself; None = not given), overlaid with ``--option`` pairs."""
    table: dict[str, Any] = {k: v for k, v in sections.pop("top", {}).items() if v is not None}
    for name, flags in sections.items():
        given = {k: v for k, v in flags.items() if v is not None}
        if given:
            table[name] = given
    for key, value in parse_extra(option or []).items():
        if isinstance(value, dict) and isinstance(table.get(key), dict):
            table[key] = {**table[key], **value}
        else:
            table[key] = value
    return table


class TaskBars:
    """A rich progress bar per task name (prior, evaluation model, attack stages), shown from the
    first report on: an error found before any work starts stays one line on the terminal."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> TaskBars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tasks:
            self.progress.stop()

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.tasks:
            self.progress.start()
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}")
    return table


PPA, PRIOR, JUDGE, RUN = "Attack (PPA)", "Prior", "Judge (scoring)", "Execution"


@attack_app.command("model")
@guarded
def attack_model(
    run: Annotated[
        Path, Arg(help="A finished run directory (config.toml + model.pt) or a model file inside one.", show_default=False)
    ],
    classes: Annotated[
        Optional[str],
        Opt(
            rich_help_panel=PPA,
            help=f"Attacked classes: all, a number (seeded random subset) or a list like 0,3,7. {shown_default('all')}",
        ),
    ] = None,
    images_per_class: Annotated[
        Optional[int], schema_option(PPAOptions, "samples_per_class", "--images-per-class", panel=PPA)
    ] = None,
    candidates_per_class: Annotated[
        Optional[int], schema_option(PPAOptions, "candidates_per_class", "--candidates", panel=PPA)
    ] = None,
    pool_size: Annotated[Optional[int], schema_option(PPAOptions, "pool_size", "--pool-size", panel=PPA)] = None,
    attack_steps: Annotated[Optional[int], schema_option(PPAOptions, "steps", "--attack-steps", panel=PPA)] = None,
    loss: Annotated[Optional[str], schema_option(PPAOptions, "loss", panel=PPA)] = None,
    ranking: Annotated[Optional[str], schema_option(PPAOptions, "ranking", panel=PPA)] = None,
    seed: Annotated[
        Optional[int], Opt(rich_help_panel=PPA, help=f"Attack seed, combined with the run's seed. {shown_default('0')}")
    ] = None,
    prior_steps: Annotated[Optional[int], schema_option(PriorOptions, "steps", "--prior-steps", panel=PRIOR)] = None,
    generator: Annotated[
        Optional[Path], Opt(rich_help_panel=PRIOR, help="Use this prior file (from `fedls prior train`) instead of the cache.")
    ] = None,
    judge: Annotated[Optional[str], schema_option(JudgeOptions, "model", "--judge", panel=JUDGE)] = None,
    surrogate_inits: Annotated[
        Optional[int], schema_option(JudgeOptions, "surrogate_inits", "--surrogate-inits", panel=JUDGE)
    ] = None,
    face_weights: Annotated[
        Optional[str], schema_option(JudgeOptions, "face_weights", "--face-weights", panel=JUDGE, default="none: δ_face skipped")
    ] = None,
    inception_weights: Annotated[
        Optional[str],
        schema_option(JudgeOptions, "inception_weights", "--inception-weights", panel=JUDGE, default="none: FID skipped"),
    ] = None,
    option: Annotated[
        Optional[list[str]],
        Opt(help="Any other model_attack option as SECTION.KEY=VALUE, repeatable, e.g. ppa.opt_flip=0 or evaluation.epochs=5."),
    ] = None,
    cache_dir: Annotated[
        Optional[str],
        Opt(rich_help_panel=RUN, help=f"Cache of priors and judges. {shown_default('$FEDLS_CACHE or ~/.cache/fedls')}"),
    ] = None,
    out: Annotated[
        Optional[Path], Opt(rich_help_panel=RUN, help=f"Output folder. {shown_default('<run>/model_attack, numbered if taken')}")
    ] = None,
    device: Annotated[str, Opt(rich_help_panel=RUN, help="auto (GPU when present), cpu or cuda.")] = "auto",
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show logs.")] = False,
) -> None:
    """Invert a trained global model with a Plug-&-Play attack; report Acc@1 (95 % interval), the
    prior baseline, the judge's accuracy, Acc@5, δ_eval and ξ."""
    from fedls.federation.observers.model_inversion import parse_model_attack
    from fedls.studies.model_inversion import attack_checkpoint

    setup_logging(verbose)
    options = parse_model_attack(attack_options(
        option,
        top={"cache_dir": cache_dir},
        ppa={"classes": parse_classes(classes), "samples_per_class": images_per_class,
             "candidates_per_class": candidates_per_class, "pool_size": pool_size, "steps": attack_steps, "loss": loss,
             "ranking": ranking, "seed": seed},
        prior={"steps": prior_steps},
        evaluation={"model": judge, "surrogate_inits": surrogate_inits, "face_weights": face_weights,
                    "inception_weights": inception_weights},
    ))
    with TaskBars() as bars:
        report = attack_checkpoint(run, options, out, device, generator, bars)
    console.print(metrics_table(f"model inversion of {run}", report.metrics))
    for file in report.files:
        console.print(f"wrote {file}")
