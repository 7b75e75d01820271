"""Per-round records: TensorBoard scalars/images and one JSON line per round."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from fedls.data import to_unit_range
from fedls.run_dir import RunDirectory

log = logging.getLogger(__name__)


class RoundTracker:
    """Collects a round's metrics from several producers, then writes them once."""

    def __init__(self, run: RunDirectory) -> None:
        self.run = run
        self.writer = SummaryWriter(log_dir=str(run.path))
        self._pending: dict[str, float] = {}
        self._round = 0

    def start_round(self, server_round: int) -> None:
        self._round = server_round
        self._pending = {}

    def add(self, metrics: dict[str, float], prefix: str = "") -> None:
        for key, value in metrics.items():
            self._pending[f"{prefix}{key}"] = float(value)

    def log_image(self, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        grid = make_grid(to_unit_range(images.detach().float().cpu()), nrow=nrow, padding=1, pad_value=1.0)
        self.writer.add_image(tag, grid, self._round)

    def flush_round(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the round's scalars to TensorBoard and one record to metrics.jsonl."""
        for key, value in sorted(self._pending.items()):
            if math.isfinite(value):
                self.writer.add_scalar(key, value, self._round)
        self.writer.flush()
        record: dict[str, Any] = {"round": self._round, **self._pending, **(extra or {})}
        self.run.append_metrics(record)
        return record

    def close(self) -> None:
        self.writer.close()
