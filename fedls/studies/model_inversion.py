"""Stand-alone model inversion on saved runs: attack a finished run's model, or train a prior.

Library side of ``fedls attack model`` and ``fedls prior train``: the commands parse flags
and call these functions, which compose the attack and its scorer exactly as the round
observer does (:class:`fedls.federation.observers.model_inversion.ModelInversion`) and write
JSON and PNG files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from fedls.assembly import build_global_model, load_splits
from fedls.attacks.model.prior import load_generator_file, load_or_train_prior
from fedls.cache import check_cache_dir
from fedls.config import RunConfig
from fedls.data import to_unit_range
from fedls.errors import CheckpointError, ConfigError
from fedls.federation.observers.model_inversion import ModelAttackOptions, ModelInversion, TaskProgress, round_title
from fedls.models import load_weights
from fedls.outputs import prepare_output_dir
from fedls.run_dir import MODEL_FILE, RunDirectory
from fedls.training.seeding import derive_seed

log = logging.getLogger(__name__)


@dataclass
class StandaloneReport:
    metrics: dict[str, float]
    out_dir: Path
    files: list[Path]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def save_grid(path: Path, images: torch.Tensor, nrow: int) -> Path:
    save_image(to_unit_range(images), path, nrow=nrow, padding=1, pad_value=1.0)
    return path


def locate_run(checkpoint: Path) -> tuple[RunDirectory, Path]:
    """A run directory (its ``model.pt``) or a model file inside a run directory."""
    if not checkpoint.exists():
        raise CheckpointError(f"{checkpoint} does not exist; pass a run directory such as runs/<name>")
    if checkpoint.is_dir():
        run = RunDirectory.open(checkpoint)
        model_file = run.model_path
    else:
        run = RunDirectory.open(checkpoint.parent)
        model_file = checkpoint
    if not model_file.is_file():
        raise CheckpointError(f"{model_file} does not exist; the run has not saved its final model ({MODEL_FILE}) yet")
    return run, model_file


def attack_checkpoint(
    checkpoint: Path,
    options: ModelAttackOptions,
    out_dir: Path | None = None,
    device: str = "auto",
    generator_file: Path | None = None,
    progress: TaskProgress | None = None,
) -> StandaloneReport:
    """Load a run's config and final model, invert and score it, and write report.json + PNGs."""
    run, model_file = locate_run(checkpoint)
    config: RunConfig = run.config()
    splits = load_splits(config)
    options.ppa.check_classes(splits.num_classes)
    model = build_global_model(config, splits)
    load_weights(model, model_file)
    torch_device = resolve_device(device)
    prior = load_generator_file(generator_file, options.prior, splits.image_shape) if generator_file else None
    inversion = ModelInversion(options, splits, config.model, torch_device, prior=prior, progress=progress)
    _ = inversion.prior, inversion.judge  # build (or load) both before the attack's progress starts
    stage_progress = (lambda stage, done, total: progress(f"attack: {stage}", done, total)) if progress else None
    result, metrics = inversion.run(model, derive_seed(config.seed, options.ppa.seed), stage_progress)
    metrics["attack_seconds_per_class"] = metrics["attack_seconds"] / max(len(result.classes), 1)
    out = prepare_output_dir(out_dir, run.path / "model_attack")
    figure = inversion.figure(result, round_title(run.path.name, metrics))
    figure.savefig(out / "attack_vs_real.png")
    files = [
        out / "attack_vs_real.png",
        save_grid(out / "attack.png", result.images, options.ppa.samples_per_class),
        save_grid(out / "baseline.png", result.baseline_images, options.ppa.samples_per_class),
        save_grid(out / "prior_samples.png", inversion.prior_samples(64), 8),
    ]
    report: dict[str, Any] = {
        "run": str(run.path),
        "model": str(model_file),
        "alpha": config.alpha,
        "classes": result.classes,
        "metrics": metrics,
        "grad_cosine_per_step": {"mean": result.grad_cosine_mean, "std": result.grad_cosine_std},
        "loss_per_step": result.loss_curve,
        "options": options.model_dump(mode="json"),
        "prior": str(inversion.prior.cache_file or inversion.prior.source),
        "judge": {"arch": inversion.judge.arch, "test_accuracy": inversion.judge.test_accuracy,
                  "cache_file": inversion.judge.cache_file},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    saved = {"images": result.images, "targets": result.targets, "latents": result.latents,
             "baseline_images": result.baseline_images, "baseline_targets": result.baseline_targets}
    torch.save(saved, out / "attack_results.pt")
    files += [out / "report.json", out / "attack_results.pt"]
    return StandaloneReport(metrics, out, files)


def train_dataset_prior(
    run: RunConfig,
    options: ModelAttackOptions,
    out_dir: Path | None = None,
    device: str = "auto",
    retrain: bool = False,
    progress: TaskProgress | None = None,
) -> StandaloneReport:
    """Train (or load) the cached prior for the public split of ``run``'s dataset, write a
    sample grid and the prior-quality proxy (measured with the judge).

    The split comes from the run config itself (dataset, seed, private classes, public split),
    through the same :func:`~fedls.assembly.load_splits` the simulation uses: for identity
    datasets the private identities depend on ``num_classes``, so a prior built from a split
    guessed any other way could contain the private identities it must not know."""
    splits = load_splits(run)
    if len(splits.public) == 0:
        raise ConfigError(f"{splits.name} has no public data with these settings; use fewer private classes (--num-classes)")
    check_cache_dir(options.cache_dir)
    torch_device = resolve_device(device)
    prior = load_or_train_prior(
        splits.name, splits.public, splits.image_shape, options.prior, options.cache_dir, torch_device,
        (lambda done, total: progress("prior", done, total)) if progress else None, retrain=retrain,
    )
    inversion = ModelInversion(options, splits, run.model, torch_device, prior=prior, progress=progress)
    quality = inversion.prior_quality()
    out = prepare_output_dir(out_dir, Path("runs") / f"prior-{splits.name}")
    files = [save_grid(out / "prior_samples.png", inversion.prior_samples(64), 8)]
    (out / "prior.json").write_text(json.dumps(
        {"dataset": splits.name, "public_kind": splits.public_kind, "public_images": len(splits.public),
         "private_classes": splits.class_names or list(range(splits.num_classes)), "data_seed": run.seed,
         "cache_file": str(prior.cache_file), "quality": quality, "judge": inversion.judge.arch,
         "judge_accuracy": inversion.judge.test_accuracy, "config": options.prior.model_dump(mode="json")}, indent=2))
    files.append(out / "prior.json")
    return StandaloneReport({f"prior_{k}": v for k, v in quality.items()}, out, files)
