"""Open a finished run directory as (config, data, trained global model) for analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedls.config import RunConfig
from fedls.data import DatasetSplits, load_dataset
from fedls.errors import CheckpointError
from fedls.models import Classifier


@dataclass
class TrainedRun:
    path: Path
    config: RunConfig
    splits: DatasetSplits
    model: Classifier

    @property
    def label(self) -> str:
        """A short name for tables and legends: the folder name and its α."""
        return f"{self.path.name} (α={self.config.alpha:g})"


def open_trained_run(path: Path) -> TrainedRun:
    """The run's final global model (``model.pt``) on the run's own dataset split, in eval mode."""
    from fedls.assembly import build_global_model, data_options
    from fedls.models import load_weights
    from fedls.run_dir import RunDirectory

    if not path.is_dir():
        raise CheckpointError(f"run directory {path} does not exist; pass a folder under runs/")
    run = RunDirectory.open(path)
    config = run.config()
    if not run.model_path.is_file():
        raise CheckpointError(f"{path} has no final model ({run.model_path.name}); let the run finish or pick another run")
    splits = load_dataset(config.dataset, data_options(config))
    model = build_global_model(config, splits)
    load_weights(model, run.model_path)
    return TrainedRun(path, config, splits, model.eval())
