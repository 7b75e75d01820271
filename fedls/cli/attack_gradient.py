"""``fedls attack gradient``: soft-label gradient inversion on a saved or fresh global model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fedls.cli.app import attack_app, console, guarded, setup_logging


@attack_app.command("gradient")
@guarded
def attack_gradient(
    run: Path | None = typer.Option(None, "--checkpoint", "--run", help="Run directory whose model.pt and config to attack."),
    model: str = typer.Option("cnn", help="Model of a fresh global model (ignored with --checkpoint)."),
    dataset: str = typer.Option("digits", help="Dataset (ignored with --checkpoint)."),
    samples: str = typer.Option("0,1,2,3", help="Comma-separated training-sample indices, one probe each."),
    alpha: float = typer.Option(0.1, help="Label-smoothing factor the victim trains with."),
    mixup: float = typer.Option(0.0, help="Mixup Beta parameter a (0 = off)."),
    recon_steps: int = typer.Option(100, help="Reconstruction steps (0 = off)."),
    tv_weight: float = typer.Option(1e-2, help="Total-variation weight of reconstruction."),
    seed: int = typer.Option(0, help="Seed of the fresh model."),
    out: Path | None = typer.Option(None, help="Output folder for JSON and PNG (must be new or empty). [default: <run>/gradient_attack or runs/gradient-attack]"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Recover soft labels (and optionally images) from single-sample gradients."""
    from fedls.attacks.gradient.options import GradientAttackOptions
    from fedls.config import RunConfig
    from fedls.errors import ConfigError
    from fedls.studies.gradient_inversion import run_gradient_study

    setup_logging(verbose)
    try:
        indices = [int(s) for s in samples.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--samples must be comma-separated integers (got {samples!r})") from None
    options = GradientAttackOptions.parse(
        {"threat": "malicious-fedsgd", "mixup": mixup, "recon_steps": recon_steps, "tv_weight": tv_weight}, "gradient attack"
    )
    config = RunConfig.parse({"model": model, "dataset": dataset, "seed": seed, "alpha": alpha}, "flags")
    report = run_gradient_study(config, indices, alpha, options, out, run_dir=run)
    table = Table(title="gradient attack (soft-label recovery)")
    columns = ["sample", "true_label", "recovered_label", "label_success", "alpha_hat", "label_max_error", "recon_psnr", "idlg_psnr"]
    for column in columns:
        table.add_column(column)
    for row in report.rows:
        table.add_row(*[("-" if c not in row else f"{row[c]:.4g}") for c in columns])
    console.print(table)
    console.print(f"wrote {report.json_path}" + (f" and {report.image_path}" if report.image_path else ""))
