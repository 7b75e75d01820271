"""The gradient attack outside a simulation: on a saved or freshly initialised global model.

Each chosen training sample plays a client's FedSGD probe (batch 1, smoothing α, optional
mixup); the attack sees only the gradient and the model, the score uses the sample.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from fedls.assembly import data_options
from fedls.attacks.gradient.attack import attack_update
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.attacks.gradient.scoring import comparison_grid, score_attack, true_features
from fedls.config import RunConfig
from fedls.data import load_dataset
from fedls.defenses import build_defense
from fedls.errors import ConfigError
from fedls.models import build_model
from fedls.outputs import prepare_output_dir
from fedls.run_dir import RunDirectory
from fedls.training.probe import probe_gradient
from strategies.observers import ClientUpdate, GroundTruth, RoundConfig, ServerView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StandaloneReport:
    rows: list[dict[str, float]]  # one per sample
    summary: dict[str, float]
    json_path: Path
    image_path: Path | None


def run_standalone_attack(
    config: RunConfig,
    samples: list[int],
    alpha: float,
    options: GradientAttackOptions,
    out_dir: Path | None,
    run_dir: Path | None = None,
) -> StandaloneReport:
    """Attack one single-sample probe per index in ``samples`` of the training split.

    ``run_dir``: take config and ``model.pt`` from a finished run; otherwise ``config``'s
    model at its seeded initialisation. Writes ``gradient_attack.json`` (and a PNG grid of
    originals / soft-label / iDLG reconstructions when reconstruction is on) to a fresh
    ``out_dir`` (default: ``<run>/gradient_attack`` or ``runs/gradient-attack``, numbered if taken).
    """
    if run_dir is not None:
        run = RunDirectory.open(run_dir)
        config = run.config()
    splits = load_dataset(config.dataset, data_options(config))
    torch.manual_seed(config.seed)
    model = build_defense(config.defense, config.defense_options).prepare_model(
        build_model(config.model, splits.image_shape, splits.num_classes)
    )
    if run_dir is not None:
        if not run.model_path.is_file():  # type: ignore[possibly-undefined]
            raise ConfigError(f"{run_dir} has no model.pt; is the run complete?")
        from fedls.models import load_weights

        load_weights(model, run.model_path)  # type: ignore[possibly-undefined]
    bad = [i for i in samples if not 0 <= i < len(splits.train)]
    if bad or not samples:
        raise ConfigError(f"sample indices must be in 0..{len(splits.train) - 1} (got {bad or 'none'})")
    model.eval()
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    view_cfg = RoundConfig(0, alpha, config.lr, 1, 1)
    rows, attacks, truths = [], [], {}
    for node, index in enumerate(samples):
        probe_model = build_model(config.model, splits.image_shape, splits.num_classes)
        probe_model.load_state_dict(model.state_dict())
        probe = probe_gradient(probe_model, Subset(splits.train, [index]), alpha, 1, torch.Generator().manual_seed(index),
                               torch.device("cpu"), mixup_beta=options.mixup or None) if not options.mixup else \
            probe_gradient(probe_model, splits.train, alpha, 1, torch.Generator().manual_seed(index), torch.device("cpu"),
                           mixup_beta=options.mixup)
        view = ServerView(view_cfg, weights, [ClientUpdate(node, 1, weights, {"local_steps": 1.0}, probe.gradient)])
        attack = attack_update(view.updates[0], view, model, options, splits.image_shape)
        assert attack is not None
        truth = GroundTruth(node, probe.images, probe.targets, probe.labels, probe.extra)
        scores = score_attack(attack, truth, true_features(model, truth))
        rows.append({"sample": float(index), "true_label": float(probe.labels[0]), "recovered_label": float(attack.recovery.top1),
                     "alpha_hat": attack.recovery.alpha, **scores})
        attacks.append(attack)
        truths[node] = truth
    summary = {k: float(np.mean([r[k] for r in rows if k in r])) for k in rows[0] if k not in ("sample", "true_label", "recovered_label")}
    out_dir = prepare_output_dir(out_dir, run_dir / "gradient_attack" if run_dir is not None else Path("runs") / "gradient-attack")
    json_path = out_dir / "gradient_attack.json"
    json_path.write_text(json.dumps({"options": options.to_dict(), "alpha": alpha, "rows": rows, "summary": summary}, indent=2))
    image_path = None
    grid = comparison_grid(attacks, truths)
    if grid is not None:
        from torchvision.utils import save_image

        image_path = out_dir / "gradient_attack.png"
        save_image((grid + 1) / 2, image_path, nrow=len(attacks))
    log.info("gradient attack on %d samples: %s", len(samples), summary)
    return StandaloneReport(rows, summary, json_path, image_path)
