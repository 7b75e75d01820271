"""`fedls attack model`: model inversion (PPA, seed 001 §4.4) on a finished run's global model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedls.cli.app import attack_app, console, guarded, setup_logging
from fedls.config import parse_assignment
from fedls.errors import ConfigError

Opt = typer.Option


def parse_extra(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are TOML scalars or arrays where they parse, else text."""
    return dict(parse_assignment(pair, "--option selection_augmentations=40") for pair in pairs)


def parse_classes(text: str | None) -> int | list[int] | None:
    """``all``, a count (``5``: random subset) or a list (``0,3,7``)."""
    if text is None:
        return None
    if text == "all":
        return 0
    try:
        return [int(c) for c in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise ConfigError(f"--classes takes all, a number or a comma-separated list (got {text!r})") from None


def attack_options(**flags: Any) -> dict[str, Any]:
    """The flat ``model_attack`` table from CLI flags (None = not given)."""
    extra = flags.pop("option", None) or []
    flags["classes"] = parse_classes(flags.get("classes"))
    options = {k: v for k, v in flags.items() if v is not None}
    options.update(parse_extra(extra))
    return options


class TaskBars:
    """A rich progress bar per task name (prior, evaluation model, attack stages)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


def make_progress() -> Progress:
    return Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}")
    return table


@attack_app.command("model")
@guarded
def attack_model(
    checkpoint: Annotated[Path, Opt(help="A finished run directory (config.toml + model.pt) or a model file inside one.")],
    classes: Annotated[Optional[str], Opt(help="Target classes: all, a number (random subset) or a list like 0,3,7. [default: all]")] = None,
    samples_per_class: Annotated[Optional[int], Opt("--samples", help="Attack images kept per class (stage 3). [default: 10]")] = None,
    candidates_per_class: Annotated[Optional[int], Opt("--candidates", help="Latents optimised per class (stage 1 top-k). [default: 20]")] = None,
    pool_size: Annotated[Optional[int], Opt("--pool", help="Latents scored in stage 1. [default: 2000]")] = None,
    steps: Annotated[Optional[int], Opt(help="Optimisation steps (stage 2). [default: 70]")] = None,
    loss: Annotated[Optional[str], Opt(help="poincare, ce or gmi. [default: poincare]")] = None,
    seed: Annotated[Optional[int], Opt(help="Attack seed (combined with the run's seed). [default: 0]")] = None,
    prior_steps: Annotated[Optional[int], Opt(help="DCGAN prior training steps (if not cached). [default: 1500]")] = None,
    eval_model: Annotated[Optional[str], Opt(help="Evaluation model architecture; auto picks one unlike the target. [default: auto]")] = None,
    eval_surrogate_inits: Annotated[Optional[int], Opt("--surrogate-inits", help="Surrogate initialisations for ξ. [default: 3]")] = None,
    eval_face_weights: Annotated[Optional[str], Opt("--face-weights", help="Local VGGFace2 FaceNet state_dict for δ_face (faces only).")] = None,
    eval_inception_weights: Annotated[Optional[str], Opt("--inception-weights", help="Local Inception weights for FID.")] = None,
    cache_dir: Annotated[Optional[str], Opt(help="Cache for priors and evaluation models. [default: ~/.cache/fedls]")] = None,
    generator: Annotated[Optional[Path], Opt(help="Use this prior file (from `fedls prior train`) instead of the cache.")] = None,
    option: Annotated[Optional[list[str]], Opt(help="Any other model_attack option as KEY=VALUE (repeatable).")] = None,
    out: Annotated[Optional[Path], Opt(help="Output folder. [default: <run>/model_attack, numbered if taken]")] = None,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show logs.")] = False,
) -> None:
    """Invert a trained global model with a Plug-&-Play attack and report Acc@1/5, δ_eval and ξ."""
    from fedls.attacks.model.config import ModelAttackOptions
    from fedls.attacks.model.standalone import attack_checkpoint

    setup_logging(verbose)
    options = ModelAttackOptions.from_dict(attack_options(
        classes=classes, samples_per_class=samples_per_class, candidates_per_class=candidates_per_class,
        pool_size=pool_size, steps=steps, loss=loss, seed=seed, prior_steps=prior_steps, eval_model=eval_model,
        eval_surrogate_inits=eval_surrogate_inits, eval_face_weights=eval_face_weights,
        eval_inception_weights=eval_inception_weights, cache_dir=cache_dir, option=option,
    ))
    with make_progress() as progress:
        report = attack_checkpoint(checkpoint, options, out, device, generator, TaskBars(progress))
    console.print(metrics_table(f"model inversion of {checkpoint}", report.metrics))
    for file in report.files:
        console.print(f"wrote {file}")
