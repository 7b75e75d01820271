"""TensorBoard HParams entries: one per finished run (setting and seed), so settings and seeds
sit side by side in the HParams dashboard (``tensorboard --logdir <out>/hparams``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedls.config import RunConfig
from fedls.outputs import write_atomic

MARKER = ".written"


def hparam_dict(config: RunConfig) -> dict[str, Any]:
    """The settings' knobs as TensorBoard-compatible scalars (options as compact JSON)."""
    return {
        "defense": config.defense,
        "defense_options": json.dumps(config.defense_options, sort_keys=True),
        "alpha": float(config.alpha),
        "lr": float(config.lr),
        "rounds": int(config.rounds),
        "clients": int(config.clients),
        "model": config.model,
        "dataset": config.dataset,
        "seed": int(config.seed),
    }


def write_hparams(root: Path, run: str, config: RunConfig, metrics: Mapping[str, float | None]) -> Path | None:
    """Write the entry once per run ``<setting>/seed-<n>`` (a resumed comparison adds nothing
    twice). Missing metrics are left out rather than written as a made-up value."""
    from torch.utils.tensorboard import SummaryWriter

    folder = root / run
    if (folder / MARKER).exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    values = {f"hparam/{k}": float(v) for k, v in metrics.items() if v is not None}
    with SummaryWriter(log_dir=str(folder)) as writer:
        writer.add_hparams(hparam_dict(config), values, run_name=".")
    write_atomic(folder / MARKER, "")
    return folder
