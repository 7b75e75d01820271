"""FedAvg run by an honest-but-curious server.

It follows the protocol (sample clients, send the global model, average the replies) but
hands every round's replies to its attack observers first, and schedules the α that
clients train with. Attacks plug in as :class:`~strategies.observers.RoundObserver`s, so
the training code never changes when an attack is added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedls.smoothing import SmoothingSchedule
from strategies.observers import ClientUpdate, GroundTruth, RoundConfig, ServerView

log = logging.getLogger(__name__)

GRADIENT_KEY = "gradient"  # reply record with a FedSGD probe gradient
TRUTH_KEY = "ground-truth"  # reply record with the probe's true data (simulation only)
TRUTH_EXTRA_KEY = "ground-truth-extra"  # ConfigRecord with scalars of the truth (alpha, mixup coefficient)
PARTITION_KEY = "partition-id"  # reported by simulated clients; not averaged
PROBE_CLIENTS_KEY = "probe-clients"  # train config: stable ids of the clients asked for a probe
ProbeSelector = Callable[[int, list[int]], dict[int, dict[str, Any]]]


def aggregate_client_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Sample-weighted mean of each client metric, plus the number of clients and samples."""
    total = sum(float(c["metrics"][weight_key]) for c in contents)
    sums: dict[str, float] = {}
    for content in contents:
        metrics = content["metrics"]
        weight = float(metrics[weight_key])
        for key, value in metrics.items():
            if key not in (weight_key, PARTITION_KEY) and isinstance(value, (int, float)):
                sums[key] = sums.get(key, 0.0) + float(value) * weight
    record = MetricRecord({key: value / max(total, 1.0) for key, value in sums.items()})
    record["num-examples"] = int(total)
    record["num-clients"] = len(contents)
    return record


def short_reason(reason: str) -> str:
    """The client's own error message out of Flower/Ray's wrapping (which repeats the traceback)."""
    marker = "Message: "
    if marker in reason:
        reason = reason.rsplit(marker, 1)[1]
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error").rstrip("'>)")


def _client_order(message: Message) -> tuple[float, int]:
    metrics = message.content["metrics"]
    return float(metrics.get(PARTITION_KEY, -1)), message.metadata.src_node_id


def _arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def _ground_truth(node_id: int, record: ArrayRecord, extra: dict[str, float]) -> GroundTruth:
    return GroundTruth(
        node_id=node_id,
        images=torch.from_numpy(record["images"].numpy().copy()),
        targets=torch.from_numpy(record["targets"].numpy().copy()),
        labels=torch.from_numpy(record["labels"].numpy().copy()),
        extra=extra,
    )


class CuriousFedAvg(FedAvg):
    """FedAvg with per-round α, capture of client replies and attack hooks.

    ``on_updates(view, truth)`` is called with each round's :class:`ServerView` and, kept
    apart, the ground truth of any probes. ``probe_selector(round, client_ids)`` decides which
    clients (by stable id) are asked for a probe and with which extra config; every client
    with such an id in the round's ``probe-clients`` list answers with a probe.
    """

    def __init__(
        self,
        schedule: SmoothingSchedule,
        on_updates: Callable[[ServerView, dict[int, GroundTruth]], None] | None = None,
        probe_selector: ProbeSelector | None = None,
        **fedavg_kwargs: Any,
    ) -> None:
        fedavg_kwargs.setdefault("train_metrics_aggr_fn", aggregate_client_metrics)
        super().__init__(**fedavg_kwargs)
        self.schedule = schedule
        self.on_updates = on_updates
        self.probe_selector = probe_selector
        self._sent: dict[int, ArrayRecord] = {}
        self._round_config: dict[int, dict[str, Any]] = {}
        self.missing_clients: dict[int, list[str]] = {}
        self._captured: set[int] = set()
        self.sampled_clients: dict[int, int] = {}

    def alpha_for(self, server_round: int) -> float:
        return self.schedule.alpha_at(server_round)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = ConfigRecord(dict(config))
        config["alpha"] = self.alpha_for(server_round)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent = {server_round: arrays}
        self._round_config[server_round] = dict(config)
        self.sampled_clients[server_round] = len(messages)
        if self.probe_selector is not None and messages:
            # Probes are addressed by stable client id (the simulation's partition id), not by
            # Flower's node ids, which are random per run: the same seed probes the same clients.
            probes = self.probe_selector(server_round, list(range(self.min_available_nodes)))
            if probes:
                probe_config = ConfigRecord({**dict(config), **next(iter(probes.values()))})
                probe_config[PROBE_CLIENTS_KEY] = [int(c) for c in sorted(probes)]
                for i, message in enumerate(messages):
                    messages[i] = Message(
                        content=RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: probe_config}),
                        message_type=message.metadata.message_type,
                        dst_node_id=message.metadata.dst_node_id,
                    )
        return messages

    def capture(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
        """Record missing clients, hand the raw replies to the attacks, strip what is not part
        of the FedAvg payload, and return the valid replies in client order. Once per round:
        a wrapper (central DP) may call it before :meth:`aggregate_train` does."""
        replies = list(replies)
        if server_round in self._captured:
            return replies
        self._captured.add(server_round)
        failed = [m for m in replies if m.has_error()]
        self.missing_clients[server_round] = [f"node {m.metadata.src_node_id}: {short_reason(m.error.reason)}" for m in failed]
        for reason in self.missing_clients[server_round]:
            log.warning("round %d: client missing (%s)", server_round, reason)
        # Replies arrive in completion order; averaging them in a fixed (client) order makes the
        # floating-point sums, and so the whole run, reproducible.
        valid = sorted((m for m in replies if not m.has_error()), key=_client_order)
        if self.on_updates is not None and valid:
            self._observe(server_round, valid)
        for message in valid:
            for key in (GRADIENT_KEY, TRUTH_KEY, TRUTH_EXTRA_KEY):
                if key in message.content:
                    del message.content[key]
        return valid

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self.capture(server_round, replies))

    def _observe(self, server_round: int, replies: list[Message]) -> None:
        updates, truth = [], {}
        for message in replies:
            node = message.metadata.src_node_id
            content = message.content
            metrics = {k: float(v) for k, v in content["metrics"].items() if isinstance(v, (int, float))}
            gradient = _arrays(content[GRADIENT_KEY]) if GRADIENT_KEY in content else None
            updates.append(
                ClientUpdate(
                    node_id=node,
                    num_examples=int(metrics.get(self.weighted_by_key, 0)),
                    weights=_arrays(content[self.arrayrecord_key]),
                    metrics=metrics,
                    gradient=gradient,
                )
            )
            if TRUTH_KEY in content:
                extra_cfg = content[TRUTH_EXTRA_KEY] if TRUTH_EXTRA_KEY in content else {}
                extra = {k: float(v) for k, v in extra_cfg.items()}
                truth[node] = _ground_truth(node, content[TRUTH_KEY], extra)
        cfg = self._round_config.get(server_round, {})
        view = ServerView(
            config=RoundConfig(
                server_round=server_round,
                alpha=float(cfg.get("alpha", 0.0)),
                lr=float(cfg.get("lr", 0.0)),
                local_epochs=int(cfg.get("local-epochs", 1)),
                batch_size=int(cfg.get("batch-size", 1)),
                values=cfg,
            ),
            global_weights=_arrays(self._sent[server_round]),
            updates=updates,
        )
        self.on_updates(view, truth)  # type: ignore[misc]
