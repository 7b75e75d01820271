"""Flower's central DP (server-side fixed clipping) around the curious FedAvg.

The server clips each client's update to ``clipping_norm`` and adds Gaussian noise
(``noise_multiplier · clipping_norm / n``) to the average: the *released* global model is
differentially private. The server itself still receives every raw update — the curious
server observes them before clipping — so central DP does not protect clients from the
server. Client-side DP-SGD (``--defense dp``) does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from fedls.errors import ConfigError
from strategies.curious_fedavg import CuriousFedAvg

OPTIONS = {"noise_multiplier", "clipping_norm"}


def central_dp_options(options: dict[str, Any]) -> tuple[float, float]:
    """Validated ``(noise_multiplier, clipping_norm)`` from the run config's ``central_dp`` table."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigError(f"unknown central_dp option(s) {', '.join(unknown)}; allowed: clipping_norm, noise_multiplier")
    noise = float(options.get("noise_multiplier", 1.0))
    clip = float(options.get("clipping_norm", 1.0))
    if noise < 0 or not clip > 0:
        raise ConfigError(f"central_dp needs noise_multiplier >= 0 and clipping_norm > 0 (got {noise}, {clip})")
    return noise, clip


class CuriousCentralDP(DifferentialPrivacyServerSideFixedClipping):
    """The curious strategy sees the raw replies first; Flower then clips, averages and noises."""

    def __init__(self, strategy: CuriousFedAvg, noise_multiplier: float, clipping_norm: float, num_sampled_clients: int) -> None:
        super().__init__(strategy, noise_multiplier, clipping_norm, num_sampled_clients)
        self.curious = strategy

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self.curious.capture(server_round, replies))
