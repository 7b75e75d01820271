"""How a run reacts to clients that do not reply: ok, degraded, or stop.

Real federations lose clients (a SuperNode's machine reboots, a Ray worker is OOM-killed).
A round that averaged fewer updates than planned is still a result, but a weaker one: it is
marked (``clients/degraded`` = 1 in the metrics, ``status: "degraded"`` in summary.json) so
a comparison never silently mixes full and partial rounds. Below a minimum share the run
stops, because continuing would report the model of a handful of clients as the
federation's.

The round loop asks :meth:`ParticipationPolicy.judge` once per round with the number of
clients it sampled and the number that replied; :class:`ParticipationLog` keeps the verdicts
for the summary.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fedls.errors import FedlsError

DEGRADED_METRIC = "clients/degraded"
REPLIED_SHARE_METRIC = "clients/replied_share"


class TooFewClients(FedlsError):
    """Fewer clients replied than the run's minimum share; the message says which round and what to do."""


class Participation(enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"
    ABORT = "abort"


@dataclass(frozen=True)
class Verdict:
    server_round: int
    sampled: int
    replied: int
    participation: Participation
    message: str

    @property
    def degraded(self) -> bool:
        """True for any round that did not get every sampled reply (including an aborting one)."""
        return self.participation is not Participation.OK

    def metrics(self) -> dict[str, float]:
        """Per-round scalars for metrics.jsonl / TensorBoard."""
        share = self.replied / self.sampled if self.sampled else 0.0
        return {DEGRADED_METRIC: float(self.degraded), REPLIED_SHARE_METRIC: share}

    def raise_if_abort(self) -> None:
        if self.participation is Participation.ABORT:
            raise TooFewClients(self.message)


@dataclass(frozen=True)
class ParticipationPolicy:
    """``min_share``: below this share of sampled clients replying, the run stops.
    ``degraded_below``: below this share the round is marked degraded (default 1.0: any
    missing reply marks it). A round in which nobody replied always stops the run, whatever
    ``min_share`` says: there is nothing to average.
    """

    min_share: float = 0.5
    degraded_below: float = 1.0

    def __post_init__(self) -> None:
        for name, value in (("min_client_share", self.min_share), ("degraded_below", self.degraded_below)):
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise FedlsError(f"{name} must be a share in [0, 1] (got {value!r})")
        if self.degraded_below < self.min_share:
            raise FedlsError(
                f"degraded_below ({self.degraded_below:g}) must be >= min_client_share ({self.min_share:g}); "
                "a round that stops the run is always degraded"
            )

    @staticmethod
    def required(share: float, sampled: int) -> int:
        """Replies needed for ``share`` of ``sampled`` (ceil, robust to 0.1 * 30 = 3.0000000000000004)."""
        return math.ceil(share * sampled - 1e-9)

    def judge(self, server_round: int, sampled: int, replied: int) -> Verdict:
        if sampled < 0 or replied < 0 or replied > sampled:
            raise ValueError(f"round {server_round}: impossible counts sampled={sampled} replied={replied}")
        needed = max(1, self.required(self.min_share, sampled))
        if replied < needed:
            message = (
                f"round {server_round}: only {replied} of {sampled} clients replied, below the minimum "
                f"{needed} (min-client-share {self.min_share:g}); bring the missing SuperNodes/workers back "
                "or lower min-client-share"
            )
            return Verdict(server_round, sampled, replied, Participation.ABORT, message)
        if replied < self.required(self.degraded_below, sampled):
            message = f"round {server_round}: degraded, {replied} of {sampled} clients replied"
            return Verdict(server_round, sampled, replied, Participation.DEGRADED, message)
        return Verdict(server_round, sampled, replied, Participation.OK, f"round {server_round}: all {sampled} clients replied")


@dataclass
class ParticipationLog:
    """Verdicts of a run's rounds, for summary.json."""

    verdicts: list[Verdict] = field(default_factory=list)

    def add(self, verdict: Verdict) -> Verdict:
        self.verdicts.append(verdict)
        return verdict

    @property
    def degraded_rounds(self) -> list[int]:
        return [v.server_round for v in self.verdicts if v.degraded]

    def status(self, finished_status: str) -> str:
        """``complete`` becomes ``degraded`` when any round was; other statuses (failed,
        interrupted) say more and are kept."""
        if finished_status == "complete" and self.degraded_rounds:
            return "degraded"
        return finished_status

    def summary(self) -> dict[str, object]:
        return {
            "degraded_rounds": self.degraded_rounds,
            "replies": {str(v.server_round): [v.replied, v.sampled] for v in self.verdicts},
        }


class NodeSource(Protocol):
    """What :func:`await_quorum` needs of Flower's ``Grid``."""

    def get_node_ids(self) -> Iterable[int]: ...


def await_quorum(
    grid: NodeSource, policy: ParticipationPolicy, planned: int, server_round: int, timeout: float, poll: float = 1.0
) -> int:
    """Connected nodes once at least the policy's minimum share of ``planned`` is there.

    Flower's strategies wait for ``min_available_nodes`` without a deadline, so a SuperNode
    that is gone for good would stall the run forever. Call this before sampling, and sample
    with ``min_available_nodes`` = :meth:`ParticipationPolicy.required` so rounds go on
    (degraded) while enough nodes remain.
    """
    needed = max(1, policy.required(policy.min_share, planned))
    deadline = time.monotonic() + timeout
    while True:
        connected = len(list(grid.get_node_ids()))
        if connected >= needed:
            return connected
        if time.monotonic() >= deadline:
            raise TooFewClients(
                f"round {server_round}: only {connected} of {planned} SuperNodes connected after {timeout:g} s, below the "
                f"minimum {needed} (min-client-share {policy.min_share:g}); "
                "restart the missing SuperNodes or lower min-client-share"
            )
        time.sleep(poll)
