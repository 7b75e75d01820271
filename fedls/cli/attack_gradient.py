"""``fedls attack gradient``: soft-label gradient inversion on a saved or fresh global model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.cli.app import attack_app, console, guarded, setup_logging
from fedls.cli.options import FiniteFloat, schema_option, shown_default

Opt = typer.Option


@attack_app.command("gradient")
@guarded
def attack_gradient(
    run: Annotated[Optional[Path], typer.Argument(
        help=f"Run directory whose model.pt and config to attack. {shown_default('a fresh model of --model on --dataset')}",
        show_default=False)] = None,
    model: Annotated[str, Opt(help="Model of a fresh global model (ignored with RUN).")] = "cnn",
    dataset: Annotated[str, Opt(help="Dataset of a fresh global model (ignored with RUN).")] = "digits",
    sample_indices: Annotated[str, Opt(
        "--sample-indices", help="Comma-separated training-sample indices, one probe each.")] = "0,1,2,3",
    alpha: Annotated[float, Opt(help="Label-smoothing factor the victim trains with.", click_type=FiniteFloat())] = 0.1,
    mixup: Annotated[Optional[float], schema_option(GradientAttackOptions, "mixup")] = None,
    recon_steps: Annotated[int, Opt(help="Image-reconstruction Adam steps per probe; 0 = labels and features only.")] = 100,
    tv_weight: Annotated[Optional[float], schema_option(GradientAttackOptions, "tv_weight")] = None,
    seed: Annotated[int, Opt(help="Seed of the fresh model.")] = 0,
    out: Annotated[Optional[Path], Opt(
        help="Output folder for JSON and PNG (must be new or empty). "
        f"{shown_default('<run>/gradient_attack or runs/gradient-attack')}")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show logs.")] = False,
) -> None:
    """Recover soft labels (and optionally images) from single-sample gradients (a malicious FedSGD probe)."""
    from fedls.config import RunConfig
    from fedls.errors import ConfigError
    from fedls.studies.gradient_inversion import run_gradient_study

    setup_logging(verbose)
    try:
        indices = [int(s) for s in sample_indices.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--sample-indices must be comma-separated integers (got {sample_indices!r})") from None
    given = {"mixup": mixup, "tv_weight": tv_weight}
    options = GradientAttackOptions.parse(
        {"threat": "malicious-fedsgd", "recon_steps": recon_steps, **{k: v for k, v in given.items() if v is not None}},
        "gradient attack",
    )
    config = RunConfig.parse({"model": model, "dataset": dataset, "seed": seed, "alpha": alpha}, "flags")
    report = run_gradient_study(config, indices, alpha, options, out, run_dir=run)
    table = Table(title="gradient attack (soft-label recovery)")
    columns = [
        "sample", "true_label", "recovered_label", "label_success", "alpha_hat", "label_max_error", "recon_psnr", "idlg_psnr",
    ]
    for column in columns:
        table.add_column(column)
    for row in report.rows:
        table.add_row(*[("-" if c not in row else f"{row[c]:.4g}") for c in columns])
    console.print(table)
    console.print(f"wrote {report.json_path}" + (f" and {report.image_path}" if report.image_path else ""))
