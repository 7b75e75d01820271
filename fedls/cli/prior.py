"""`fedls prior train`: train (or load) the server's generative prior on a dataset's public split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedls.cli.app import app, console, guarded, setup_logging
from fedls.cli.attack_model import TaskBars, attack_options, make_progress, metrics_table

Opt = typer.Option

prior_app = typer.Typer(help="Generative priors for model inversion (trained on public data only).", no_args_is_help=True)
app.add_typer(prior_app, name="prior")


@prior_app.command("train")
@guarded
def train(
    dataset: Annotated[str, Opt(help="Dataset whose public split trains the prior.")] = "digits",
    data_dir: Annotated[Optional[Path], Opt(help="Folder with the dataset's files (not needed for digits).")] = None,
    image_size: Annotated[Optional[int], Opt(help="Resolution (default: the dataset's own).")] = None,
    data_seed: Annotated[int, Opt(help="Split seed (the run's --seed decides the public split).")] = 0,
    prior_steps: Annotated[Optional[int], Opt("--steps", help="Generator updates. [default: 1500]")] = None,
    prior_latent_dim: Annotated[Optional[int], Opt("--latent-dim", help="Latent size. [default: 32]")] = None,
    prior_width: Annotated[Optional[int], Opt("--width", help="Widest generator layer. [default: 64]")] = None,
    prior_seed: Annotated[Optional[int], Opt("--seed", help="Prior seed. [default: 0]")] = None,
    target_model: Annotated[str, Opt(help="Target architecture; the quality proxy uses an evaluation model unlike it.")] = "cnn",
    cache_dir: Annotated[Optional[str], Opt(help="Cache folder. [default: ~/.cache/fedls]")] = None,
    retrain: Annotated[bool, Opt(help="Train again even when cached (overwrites the cache entry).")] = False,
    out: Annotated[Optional[Path], Opt(help="Output folder. [default: runs/prior-<dataset>, numbered if taken]")] = None,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show logs.")] = False,
) -> None:
    """Train the DCGAN prior, write a sample grid and its quality proxy (see docs/model_inversion.md)."""
    from fedls.attacks.model.config import ModelAttackOptions
    from fedls.attacks.model.standalone import train_dataset_prior

    setup_logging(verbose)
    options = ModelAttackOptions.from_dict(attack_options(
        prior_steps=prior_steps, prior_latent_dim=prior_latent_dim, prior_width=prior_width, prior_seed=prior_seed,
        cache_dir=cache_dir,
    ))
    with make_progress() as progress:
        report = train_dataset_prior(
            dataset, options, data_dir, image_size, data_seed, out, device, retrain, target_model, TaskBars(progress)
        )
    console.print(metrics_table(f"prior for {dataset}", report.metrics))
    for file in report.files:
        console.print(f"wrote {file}")
