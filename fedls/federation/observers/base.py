"""The hook between the curious server and its leakage instruments.

An observer composes one attack (``fedls.attacks``, sees only the server's view) with its
scorer (``fedls.metrics``, sees the attack's result and the ground truth). The server calls
it at two points of every round and hands it a :class:`RoundLog` to write to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from fedls.threat_model import GroundTruth, ProbeRequest, ServerView

if TYPE_CHECKING:
    from matplotlib.figure import Figure

class RoundLog(Protocol):
    """Where an observer writes a round's results (TensorBoard + metrics.jsonl)."""

    def scalars(self, metrics: Mapping[str, float]) -> None:
        """Headline numbers of the round, one TensorBoard chart each (tags like ``leakage/...``)."""

    def per_client(self, name: str, values: Mapping[int, float]) -> None:
        """One value per client (stable client id → value): metrics.jsonl and one histogram."""

    def figure(self, tag: str, figure: Figure) -> None:
        """A labelled matplotlib figure for the round (closed by the log)."""


class RoundObserver:
    """Base observer: every hook does nothing. Subclasses override what they need."""

    @property
    def watches_updates(self) -> bool:
        """Whether this observer reads the clients' updates. The server then keeps a round's
        updates until every observer has seen them instead of averaging each as it arrives."""
        return type(self).on_client_updates is not RoundObserver.on_client_updates

    def probe_requests(self, server_round: int, client_ids: Sequence[int]) -> dict[int, ProbeRequest]:
        """Clients (stable ids) this observer wants probed this round; {} for an honest server."""
        return {}

    def on_client_updates(self, view: ServerView, truth: Mapping[int, GroundTruth], log: RoundLog) -> None:
        """After the round's replies arrive, before aggregation."""

    def on_global_model(self, server_round: int, model: torch.nn.Module, log: RoundLog) -> None:
        """After aggregation and evaluation (round 0: the initial model)."""
