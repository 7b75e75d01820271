"""Per-round records: TensorBoard scalars/figures and one JSON line per round.

:class:`RoundTracker` is the server's :class:`~fedls.federation.observers.base.RoundLog`.
Headline numbers become TensorBoard scalars; per-client values go to ``metrics.jsonl`` (under
``per_client``) and one histogram per name and round, not to one chart per client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from fedls.run_dir import RunDirectory

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


class RoundTracker:
    """Collects a round's metrics from several producers, then writes them once."""

    def __init__(self, run: RunDirectory) -> None:
        self.run = run
        self.writer = SummaryWriter(log_dir=str(run.path))
        self._pending: dict[str, float] = {}
        self._per_client: dict[str, dict[str, float]] = {}
        self._round = 0

    @property
    def server_round(self) -> int:
        return self._round

    def start_round(self, server_round: int) -> None:
        self._round = server_round
        self._pending = {}
        self._per_client = {}

    # -- RoundLog -----------------------------------------------------------------------
    def scalars(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._pending[key] = float(value)

    def per_client(self, name: str, values: Mapping[int, float]) -> None:
        if not values:
            return
        self._per_client[name] = {str(client): float(v) for client, v in sorted(values.items())}
        finite = np.asarray([v for v in values.values() if math.isfinite(v)], dtype=np.float64)
        if finite.size:
            self.writer.add_histogram(f"per_client/{name}", finite, self._round)

    def figure(self, tag: str, figure: Figure) -> None:
        self.writer.add_figure(tag, figure, self._round, close=True)

    # -- bookkeeping --------------------------------------------------------------------
    def add(self, metrics: Mapping[str, float], prefix: str = "") -> None:
        self.scalars({f"{prefix}{key}": value for key, value in metrics.items()})

    def flush_round(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the round's scalars to TensorBoard and one record to metrics.jsonl."""
        for key, value in sorted(self._pending.items()):
            if math.isfinite(value):
                self.writer.add_scalar(key, value, self._round)
        self.writer.flush()
        record: dict[str, Any] = {"round": self._round, **self._pending, **(extra or {})}
        if self._per_client:
            record["per_client"] = self._per_client
        self.run.append_metrics(record)
        return record

    def close(self) -> None:
        self.writer.close()
