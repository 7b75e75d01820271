"""`fedls prior train`: train (or load) the server's generative prior on a dataset's public split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, cast, get_args

import click
import typer

from fedls.attacks.model.config import PriorOptions
from fedls.cli.app import app, console, guarded, setup_logging
from fedls.cli.attack_model import TaskBars, attack_options, make_progress, metrics_table
from fedls.cli.options import schema_option, shown_default
from fedls.data.base import PublicSplit

Opt = typer.Option

prior_app = typer.Typer(help="Generative priors for model inversion (trained on public data only).", no_args_is_help=True)
app.add_typer(prior_app, name="prior")


@prior_app.command("train")
@guarded
def train(
    dataset: Annotated[str, Opt(help="Dataset whose public split trains the prior.")] = "digits",
    data_dir: Annotated[Optional[Path], Opt(help="Folder with the dataset's files (not needed for digits).")] = None,
    image_size: Annotated[Optional[int], Opt(help="Resolution. " + shown_default("the dataset's own"))] = None,
    data_seed: Annotated[int, Opt(help="Split seed (the run's --seed decides the public split).")] = 0,
    public_split: Annotated[
        str,
        Opt(
            click_type=click.Choice(get_args(PublicSplit)),
            help="disjoint (public = the classes the private task lacks) or same-class (weaker threat).",
        ),
    ] = "disjoint",
    prior_steps: Annotated[Optional[int], schema_option(PriorOptions, "steps", "--prior-steps")] = None,
    latent_dim: Annotated[Optional[int], schema_option(PriorOptions, "latent_dim", "--latent-dim")] = None,
    width: Annotated[Optional[int], schema_option(PriorOptions, "width", "--width")] = None,
    prior_seed: Annotated[Optional[int], schema_option(PriorOptions, "seed", "--prior-seed")] = None,
    target_model: Annotated[str, Opt(help="Target architecture; the quality proxy uses an evaluation model unlike it.")] = "cnn",
    cache_dir: Annotated[Optional[str], Opt(help=f"Cache folder. {shown_default('$FEDLS_CACHE or ~/.cache/fedls')}")] = None,
    retrain: Annotated[bool, Opt(help="Train again even when cached (overwrites the cache entry).")] = False,
    out: Annotated[Optional[Path], Opt(help=f"Output folder. {shown_default('runs/prior-<dataset>, numbered if taken')}")] = None,
    device: Annotated[str, Opt(help="auto (GPU when present), cpu or cuda.")] = "auto",
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show logs.")] = False,
) -> None:
    """Train the DCGAN prior, write a sample grid and its quality proxy (see docs/model_inversion.md)."""
    from fedls.federation.observers.model_inversion import parse_model_attack
    from fedls.studies.model_inversion import train_dataset_prior

    setup_logging(verbose)
    options = parse_model_attack(attack_options(
        top={"cache_dir": cache_dir},
        prior={"steps": prior_steps, "latent_dim": latent_dim, "width": width, "seed": prior_seed},
    ))
    with make_progress() as progress:
        report = train_dataset_prior(
            dataset, options, data_dir, image_size, data_seed, cast(PublicSplit, public_split), out, device, retrain,
            target_model,
            TaskBars(progress),
        )
    console.print(metrics_table(f"prior for {dataset}", report.metrics))
    for file in report.files:
        console.print(f"wrote {file}")
