"""Flower's central DP (server-side fixed clipping) around the curious FedAvg.

The server clips each client's update to ``clipping_norm`` and adds Gaussian noise
(``noise_multiplier · clipping_norm / n``) to the average: the *released* global model is
differentially private. The server itself still receives every raw update — the curious
server observes them before clipping — so central DP does not protect clients from the
server. Client-side DP-SGD (``--defense dp``) does.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from strategies.curious_fedavg import CuriousFedAvg


class CuriousCentralDP(DifferentialPrivacyServerSideFixedClipping):
    """The curious strategy sees the raw replies first; Flower then clips, averages and noises."""

    def __init__(self, strategy: CuriousFedAvg, noise_multiplier: float, clipping_norm: float, num_sampled_clients: int) -> None:
        super().__init__(strategy, noise_multiplier, clipping_norm, num_sampled_clients)
        self.curious = strategy

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self.curious.capture(server_round, replies))
