"""FedAvg run by an honest-but-curious server.

It follows the protocol (sample clients, send the global model and the declared recipe,
average the replies) but hands every round's replies to its attack observers first, and
schedules the α that clients train with. The strategy only speaks Flower: what goes into
and comes out of messages is encoded by :mod:`fedls.protocol`, what the attacks see is a
:class:`~fedls.threat_model.ServerView`, and the ground truth travels apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedls import protocol
from fedls.federation.aggregation import WeightedMean
from fedls.smoothing import SmoothingSchedule
from fedls.threat_model import ClientRecipe, GroundTruth, ProbeRequest, ServerView

log = logging.getLogger(__name__)

ProbeSelector = Callable[[int, list[int]], dict[int, ProbeRequest]]
UpdatesHook = Callable[[ServerView, Mapping[int, GroundTruth]], None]
RoundGate = Callable[[Grid, int], object]  # called before sampling; raises to stop the run


@dataclass(frozen=True)
class ClientSetup:
    """What every client needs besides the recipe: the run's static config and where to run."""

    run_config_toml: str
    device: str
    threads: int


def aggregate_client_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Sample-weighted mean of each client metric, plus the number of clients and samples."""
    total = sum(float(_metrics(c)[weight_key]) for c in contents)
    sums: dict[str, float] = {}
    for content in contents:
        metrics = _metrics(content)
        weight = float(metrics[weight_key])
        for key, value in metrics.items():
            if key not in protocol.NOT_AVERAGED and isinstance(value, (int, float)):
                sums[key] = sums.get(key, 0.0) + float(value) * weight
    record = MetricRecord({key: value / max(total, 1.0) for key, value in sums.items()})
    record["num-examples"] = int(total)
    record["num-clients"] = len(contents)
    return record


def _metrics(content: RecordDict) -> dict[str, Any]:
    record = content[protocol.METRICS]
    return dict(record) if isinstance(record, MetricRecord) else {}


def _arrays(content: RecordDict) -> dict[str, np.ndarray]:
    record = content[protocol.ARRAYS]
    if not isinstance(record, ArrayRecord):
        raise TypeError("a client's reply has no model arrays")
    return {name: array.numpy() for name, array in record.items()}


def short_reason(reason: str) -> str:
    """The client's own error message out of Flower/Ray's wrapping (which repeats the traceback)."""
    marker = "Message: "
    if marker in reason:
        reason = reason.rsplit(marker, 1)[1]
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error").rstrip("'>)")


def _client_order(message: Message) -> tuple[float, int]:
    return float(_metrics(message.content).get(protocol.CLIENT_ID, -1)), message.metadata.src_node_id


class CuriousFedAvg(FedAvg):
    """FedAvg with per-round α and recipe, capture of client replies and attack hooks.

    ``on_updates(view, truth)`` is called with each round's :class:`ServerView` and, kept
    apart, the clients' ground truth. ``probe_selector(round, client_ids)`` — only under a
    malicious threat mode — names the clients (stable ids) asked for a probe and how.

    The average is :class:`~fedls.federation.aggregation.WeightedMean` (exact, so the same in
    any order of replies). With ``stream_updates`` (no observer needs the round's updates
    together, no wrapper clips them), :meth:`receive` folds each update into the average as
    the grid pulls it and drops its arrays, so the server holds one model, not one per client.

    With ``fraction_train`` < 1 the round's clients are drawn by stable client id from the
    run's own stream (``sampling_seed`` and the round), not as Flower's FedAvg draws them:
    it samples node ids, which are random per run, with Python's global generator, so the same
    seed trained other clients in every run. Which node is which client is learned once by a
    roll call (a ``query`` message each node answers with its partition id).
    """

    def __init__(
        self,
        schedule: SmoothingSchedule,
        recipe: ClientRecipe,
        setup: ClientSetup,
        num_clients: int,
        on_updates: UpdatesHook | None = None,
        probe_selector: ProbeSelector | None = None,
        before_round: RoundGate | None = None,
        stream_updates: bool = False,
        sampling_seed: int = 0,
        roll_call_timeout: float | None = None,
        **fedavg_kwargs: Any,
    ) -> None:
        fedavg_kwargs.setdefault("train_metrics_aggr_fn", aggregate_client_metrics)
        super().__init__(**fedavg_kwargs)
        self.schedule = schedule
        self.recipe = recipe
        self.setup = setup
        self.on_updates = on_updates
        self.probe_selector = probe_selector
        self.num_clients = num_clients  # stable client ids are 0 .. num_clients-1 (the partitions)
        self.before_round = before_round
        self._sent: dict[int, ArrayRecord] = {}
        self.missing_clients: dict[int, list[str]] = {}
        self._captured: set[int] = set()
        self.sampled_clients: dict[int, int] = {}
        self._addressed: dict[int, list[int]] = {}  # node ids each round's instructions went to
        if stream_updates and on_updates is not None:
            raise ValueError("updates cannot be streamed while an observer needs the round's updates together")
        self.stream_updates = stream_updates
        self._round = 0  # the round whose instructions went out last
        self._running: dict[int, WeightedMean] = {}  # streamed rounds: the average so far
        self.sampling_seed = sampling_seed
        self.roll_call_timeout = roll_call_timeout
        self._client_of: dict[int, int] = {}  # node id -> stable client id, from the roll call

    def alpha_for(self, server_round: int) -> float:
        return self.schedule.alpha_at(server_round)

    def recipe_for(self, server_round: int) -> ClientRecipe:
        return self.recipe.replace("recipe", alpha=self.alpha_for(server_round))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        # Probes are addressed by stable client id (the partition id), not by Flower's node ids,
        # which are random per run: the same seed probes the same clients.
        if self.before_round is not None:
            # Flower waits for min_available_nodes without a deadline; the gate gives up in time
            self.before_round(grid, server_round)
        drawn = self.sample(grid, server_round) if self.fraction_train < 1.0 else None
        clients = [self._client_of[node] for node in drawn] if drawn is not None else list(range(self.num_clients))
        probes = self.probe_selector(server_round, clients) if self.probe_selector else {}
        instructions = protocol.encode_instructions(
            self.setup.run_config_toml, self.recipe_for(server_round), self.setup.device, self.setup.threads, probes
        )
        round_config = ConfigRecord({**dict(config), **dict(instructions)})
        if drawn is not None:
            round_config[protocol.ROUND] = server_round  # as FedAvg.configure_train does
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: round_config})
            messages = list(self._construct_messages(record, drawn, MessageType.TRAIN))
        else:  # every node: nothing to draw
            messages = list(super().configure_train(server_round, arrays, round_config, grid))
        self._sent = {server_round: arrays}
        self._round = server_round
        self.sampled_clients[server_round] = len(messages)
        self._addressed[server_round] = [m.metadata.dst_node_id for m in messages]
        return messages

    def sample(self, grid: Grid, server_round: int) -> list[int]:
        """The nodes of the clients drawn for ``server_round``: ``fraction_train`` of the nodes
        up (at least ``min_train_nodes``), chosen among those whose client id is known."""
        nodes = sorted(grid.get_node_ids())
        unknown = [node for node in nodes if node not in self._client_of]
        if unknown:
            self._roll_call(grid, unknown)
        node_of = {self._client_of[node]: node for node in nodes if node in self._client_of}
        clients = sorted(node_of)
        size = min(len(clients), max(int(len(nodes) * self.fraction_train), self.min_train_nodes))
        drawn = np.random.default_rng([self.sampling_seed, server_round]).choice(len(clients), size=size, replace=False)
        log.info("round %d: %d of %d clients drawn", server_round, size, len(nodes))
        return [node_of[clients[index]] for index in sorted(drawn)]

    def _roll_call(self, grid: Grid, nodes: list[int]) -> None:
        """Ask each node which client it is; one that does not answer in time is asked again
        next round and not drawn before."""
        calls = [Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node) for node in nodes]
        for answer in grid.send_and_receive(calls, timeout=self.roll_call_timeout):
            client = None if answer.has_error() else protocol.decode_roll_call_answer(answer.content)
            if client is None:
                log.warning("node %d did not say which client it is", answer.metadata.src_node_id)
            else:
                self._client_of[answer.metadata.src_node_id] = client

    def capture(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
        """Record missing clients, hand the raw replies to the attacks, strip what is not part
        of the FedAvg payload, and return the valid replies in client order. Once per round:
        a wrapper (central DP) may call it before :meth:`aggregate_train` does."""
        replies = list(replies)
        if server_round in self._captured:
            return replies
        self._captured.add(server_round)
        failed = [m for m in replies if m.has_error()]
        # With a round timeout Flower returns only the replies that arrived in time; a client
        # that never answered leaves no message at all. Flower gives at most one reply per
        # instruction, so the instructions without one are counted; they are named by the nodes
        # that sent nothing (an error the SuperLink writes for a lost node carries the
        # SuperLink's id as its source, not the node's, so names alone would count it twice).
        addressed = self._addressed.get(server_round, [])
        answered = {m.metadata.src_node_id for m in replies}
        unanswered = max(0, len(addressed) - len(replies))
        silent = [node for node in addressed if node not in answered][:unanswered]
        self.missing_clients[server_round] = [
            f"node {m.metadata.src_node_id}: {short_reason(m.error.reason or '')}" for m in failed
        ] + [f"node {node}: no reply before the round timeout; raise --round-timeout" for node in silent]
        for reason in self.missing_clients[server_round]:
            log.warning("round %d: client missing (%s)", server_round, reason)
        # Replies arrive in completion order; averaging them in a fixed (client) order makes the
        # floating-point sums, and so the whole run, reproducible.
        valid = sorted((m for m in replies if not m.has_error()), key=_client_order)
        if self.on_updates is not None and valid:
            self._observe(server_round, valid)
        for message in valid:
            protocol.strip_private(message.content)
        return valid

    def receive(self, reply: Message) -> Message:
        """The grid's reply handler: with ``stream_updates``, fold the update into the round's
        average now and keep only the metrics; otherwise keep the reply as it is."""
        if not self.stream_updates or reply.has_error() or reply.metadata.message_type != MessageType.TRAIN:
            return reply
        content = reply.content
        weight = float(_metrics(content)[self.weighted_by_key])
        self._running.setdefault(self._round, WeightedMean()).add(_arrays(content), weight)
        protocol.strip_private(content)
        content[protocol.ARRAYS] = ArrayRecord()  # folded; Flower's consistency check sees one (empty) record
        return reply

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(self.capture(server_round, replies), is_train=True)
        mean = self._running.pop(server_round, None)
        if not valid:
            return None, None
        if mean is None:  # not streamed: the replies still carry their arrays
            mean = WeightedMean()
            for message in valid:
                mean.add(_arrays(message.content), float(_metrics(message.content)[self.weighted_by_key]))
        averaged = ArrayRecord({name: Array(value) for name, value in mean.result().items()})
        return averaged, self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)

    def _observe(self, server_round: int, replies: list[Message]) -> None:
        updates, truth = [], {}
        for message in replies:
            update, client_truth = protocol.decode_reply(message.metadata.src_node_id, message.content, self.weighted_by_key)
            updates.append(update)
            if client_truth is not None:
                truth[update.client_id] = client_truth
        view = ServerView(
            server_round=server_round,
            recipe=self.recipe_for(server_round),
            global_weights={name: array.numpy() for name, array in self._sent[server_round].items()},
            updates=updates,
        )
        if self.on_updates is not None:
            self.on_updates(view, truth)
