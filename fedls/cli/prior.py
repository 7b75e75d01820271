"""`fedls prior train`: train (or load) the server's generative prior on a dataset's public split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedls.attacks.model.config import PriorOptions
from fedls.cli.app import app, console, guarded, setup_logging
from fedls.cli.attack_model import TaskBars, attack_options, metrics_table
from fedls.cli.options import schema_option, shown_default
from fedls.config import RunConfig, deep_merge

Opt = typer.Option

prior_app = typer.Typer(help="Generative priors for model inversion (trained on public data only).", no_args_is_help=True)
app.add_typer(prior_app, name="prior")


@prior_app.command("train")
@guarded
def train(
    config: Annotated[
        Optional[Path],
        Opt("--config", help="A run config (TOML): the prior is trained on exactly that run's public split. "
            + shown_default("fedls' default run")),
    ] = None,
    dataset: Annotated[Optional[str], schema_option(RunConfig, "dataset")] = None,
    data_dir: Annotated[Optional[str], schema_option(RunConfig, "data_dir")] = None,
    image_size: Annotated[Optional[int], schema_option(RunConfig, "image_size")] = None,
    num_classes: Annotated[Optional[int], schema_option(RunConfig, "num_classes")] = None,
    data_seed: Annotated[Optional[int], schema_option(RunConfig, "seed", "--data-seed")] = None,
    public_split: Annotated[Optional[str], schema_option(RunConfig, "public_split")] = None,
    prior_steps: Annotated[Optional[int], schema_option(PriorOptions, "steps", "--prior-steps")] = None,
    latent_dim: Annotated[Optional[int], schema_option(PriorOptions, "latent_dim", "--latent-dim")] = None,
    width: Annotated[Optional[int], schema_option(PriorOptions, "width", "--width")] = None,
    prior_seed: Annotated[Optional[int], schema_option(PriorOptions, "seed", "--prior-seed")] = None,
    target_model: Annotated[Optional[str], schema_option(RunConfig, "model", "--target-model")] = None,
    cache_dir: Annotated[Optional[str], Opt(help=f"Cache folder. {shown_default('$FEDLS_CACHE or ~/.cache/fedls')}")] = None,
    retrain: Annotated[bool, Opt(help="Train again even when cached (overwrites the cache entry).")] = False,
    out: Annotated[Optional[Path], Opt(help=f"Output folder. {shown_default('runs/prior-<dataset>, numbered if taken')}")] = None,
    device: Annotated[str, Opt(help="auto (GPU when present), cpu or cuda.")] = "auto",
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show logs.")] = False,
) -> None:
    """Train the DCGAN prior, write a sample grid and its quality proxy (see docs/model_inversion.md).

    Data flags override --config; the split is built as the run builds it, so the prior never sees its private classes."""
    from fedls.federation.observers.model_inversion import parse_model_attack
    from fedls.studies.model_inversion import train_dataset_prior

    setup_logging(verbose)
    base = RunConfig.from_toml(config) if config is not None else RunConfig()
    flags = {"dataset": dataset, "data_dir": data_dir, "image_size": image_size, "num_classes": num_classes,
             "seed": data_seed, "public_split": public_split, "model": target_model}
    run = base.with_overrides(**flags).check_registries()
    options = parse_model_attack(deep_merge(run.model_attack, attack_options(
        top={"cache_dir": cache_dir},
        prior={"steps": prior_steps, "latent_dim": latent_dim, "width": width, "seed": prior_seed},
    )))
    with TaskBars() as bars:
        report = train_dataset_prior(run, options, out, device, retrain, bars)
    console.print(metrics_table(f"prior for {run.dataset}", report.metrics))
    for file in report.files:
        console.print(f"wrote {file}")
