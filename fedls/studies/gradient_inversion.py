"""The gradient attack outside a simulation: on a saved or freshly initialised global model.

Each chosen training sample plays a client's malicious FedSGD probe (batch 1, smoothing α,
optional mixup); the attack sees only the gradient and the model (a :class:`ServerView`), the
scorer gets the sample.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import pyplot as plt
from torch.utils.data import Subset

from fedls.assembly import build_global_model, load_splits
from fedls.attacks.gradient.attack import GradientAttack, ProbeLeak
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.config import RunConfig
from fedls.data import ImageDataset
from fedls.errors import ConfigError
from fedls.federation.observers.gradient import mean_public_image, reconstruction_figure
from fedls.metrics import gradient_leakage as scoring
from fedls.models import load_weights
from fedls.outputs import prepare_output_dir
from fedls.run_dir import RunDirectory
from fedls.threat_model import ClientUpdate, GroundTruth, ServerView
from fedls.training.probe import probe_gradient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GradientStudyReport:
    rows: list[dict[str, float]]  # one per sample
    summary: dict[str, float]
    json_path: Path
    image_path: Path | None


def run_gradient_study(
    config: RunConfig, samples: list[int], alpha: float, options: GradientAttackOptions, out_dir: Path | None,
    run_dir: Path | None = None,
) -> GradientStudyReport:
    """Attack one single-sample probe per index in ``samples`` of the training split.

    ``run_dir``: take config and ``model.pt`` from a finished run; otherwise ``config``'s model
    at its seeded initialisation. Writes ``gradient_attack.json`` (and a labelled PNG of
    originals / soft-label / iDLG reconstructions when reconstruction is on) to a fresh
    ``out_dir`` (default: ``<run>/gradient_attack`` or ``runs/gradient-attack``, numbered if taken).
    """
    run = RunDirectory.open(run_dir) if run_dir is not None else None
    if run is not None:
        config = run.config()
    splits = load_splits(config)
    bad = [i for i in samples if not 0 <= i < len(splits.train)]
    if bad or not samples:
        raise ConfigError(f"sample indices must be in 0..{len(splits.train) - 1} (got {bad or 'none'})")
    torch.manual_seed(config.seed)
    model = build_global_model(config, splits)
    if run is not None:
        if not run.model_path.is_file():
            raise ConfigError(f"{run_dir} has no model.pt; is the run complete?")
        load_weights(model, run.model_path)
    model.eval()
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    options = options.replace("gradient_attack", threat="malicious-fedsgd")
    recipe = config.recipe(alpha)
    attack = GradientAttack(options, build_global_model(config, splits), splits.image_shape)
    rows, leaks, truths = [], [], {}
    for client, index in enumerate(samples):
        probe_model = build_global_model(config, splits)
        probe_model.load_state_dict(model.state_dict())
        source = splits.train if options.mixup else Subset(splits.train, [index])
        probe = probe_gradient(probe_model, source, alpha, 1, torch.Generator().manual_seed(index), torch.device("cpu"),
                               mixup_beta=options.mixup or None)
        update = ClientUpdate(client, client, 1, 1, recipe, weights, {}, probe.gradient)
        leak = attack.attack_probe(update, ServerView(1, recipe, weights, [update]))
        if leak is None:
            continue
        truth = GroundTruth(client, np.bincount(probe.labels.numpy(), minlength=splits.num_classes), alpha,
                            probe.images, probe.targets, probe.labels, probe.extra)
        rows.append(_score(leak, truth, model, splits.public, index))
        leaks.append(leak)
        truths[client] = truth
    summary = {
        k: float(np.mean([r[k] for r in rows if k in r])) for k in rows[0] if k not in ("sample", "true_label", "recovered_label")
    }
    out_dir = prepare_output_dir(
        out_dir, run_dir / "gradient_attack" if run_dir is not None else Path("runs") / "gradient-attack"
    )
    json_path = out_dir / "gradient_attack.json"
    json_path.write_text(
        json.dumps({"options": options.model_dump(), "alpha": alpha, "rows": rows, "summary": summary}, indent=2)
    )
    image_path = None
    shown = [leak for leak in leaks if leak.soft is not None]
    if shown:
        names = splits.class_names or [str(c) for c in range(splits.num_classes)]
        figure = reconstruction_figure(shown, truths, names, mean_public_image(splits.public))
        image_path = out_dir / "gradient_attack.png"
        figure.savefig(image_path, dpi=120)
        plt.close(figure)
    log.info("gradient attack on %d samples: %s", len(samples), summary)
    return GradientStudyReport(rows, summary, json_path, image_path)


def _score(leak: ProbeLeak, truth: GroundTruth, model: torch.nn.Module, public: ImageDataset, index: int) -> dict[str, float]:
    rec = leak.recovery
    row = {"sample": float(index), "true_label": float(truth.labels[0]) if truth.labels is not None else -1.0,
           "recovered_label": float(rec.top1), "alpha_hat": rec.alpha, "claimed_success": float(rec.success),
           **scoring.score_probe_label(rec.label, rec.alpha, truth, rec.mixup_coefficient)}
    cosine = scoring.feature_cosine(rec.features, model, truth)
    if cosine is not None:
        row["feature_cosine"] = cosine
    if leak.soft is not None and leak.hard is not None:
        row.update(scoring.score_reconstruction(leak.soft.image, leak.hard.image, truth, mean_public_image(public)))
    return row
