"""Participation policy (unit) and a Ray worker killed mid-run (simulation, restarted by Ray)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from fedls.config import RunConfig
from fedls.errors import FedlsError
from fedls.federation.faults import (
    DEGRADED_METRIC,
    Participation,
    ParticipationLog,
    ParticipationPolicy,
    TooFewClients,
    await_quorum,
)
from fedls.federation.simulation import simulate


def test_every_reply_is_ok_and_not_marked() -> None:
    verdict = ParticipationPolicy(min_share=0.5).judge(3, sampled=4, replied=4)
    assert verdict.participation is Participation.OK and not verdict.degraded
    assert verdict.metrics() == {DEGRADED_METRIC: 0.0, "clients/replied_share": 1.0}
    verdict.raise_if_abort()  # no exception


def test_missing_reply_above_minimum_is_degraded() -> None:
    verdict = ParticipationPolicy(min_share=0.5).judge(2, sampled=4, replied=2)
    assert verdict.participation is Participation.DEGRADED
    assert verdict.metrics()[DEGRADED_METRIC] == 1.0 and verdict.metrics()["clients/replied_share"] == 0.5
    verdict.raise_if_abort()


def test_below_minimum_aborts_with_one_actionable_line() -> None:
    verdict = ParticipationPolicy(min_share=0.5).judge(5, sampled=4, replied=1)
    assert verdict.participation is Participation.ABORT and verdict.degraded
    with pytest.raises(TooFewClients) as info:
        verdict.raise_if_abort()
    message = str(info.value)
    assert "\n" not in message and "round 5" in message and "1 of 4" in message and "min-client-share" in message


def test_minimum_is_a_ceiling_of_the_share() -> None:
    policy = ParticipationPolicy(min_share=0.5)
    assert policy.judge(1, sampled=5, replied=3).participation is Participation.DEGRADED  # needs ceil(2.5) = 3
    assert policy.judge(1, sampled=5, replied=2).participation is Participation.ABORT
    # 0.1 * 30 is 3.0000000000000004 in floating point: 3 replies must still be enough.
    assert ParticipationPolicy(min_share=0.1).judge(1, sampled=30, replied=3).participation is Participation.DEGRADED


def test_no_reply_always_aborts_even_with_zero_minimum() -> None:
    assert ParticipationPolicy(min_share=0.0).judge(1, sampled=3, replied=0).participation is Participation.ABORT
    assert ParticipationPolicy(min_share=0.0).judge(1, sampled=3, replied=1).participation is Participation.DEGRADED


def test_degraded_threshold_is_configurable() -> None:
    lenient = ParticipationPolicy(min_share=0.25, degraded_below=0.75)
    assert lenient.judge(1, sampled=4, replied=3).participation is Participation.OK
    assert lenient.judge(1, sampled=4, replied=2).participation is Participation.DEGRADED
    assert lenient.judge(1, sampled=4, replied=0).participation is Participation.ABORT


@pytest.mark.parametrize(("min_share", "degraded_below"), [(-0.1, 1.0), (1.5, 1.0), (0.8, 0.5)])
def test_inconsistent_policy_is_refused(min_share: float, degraded_below: float) -> None:
    with pytest.raises(FedlsError):
        ParticipationPolicy(min_share=min_share, degraded_below=degraded_below)


def test_impossible_counts_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        ParticipationPolicy().judge(1, sampled=2, replied=3)


def test_log_turns_complete_into_degraded_but_keeps_failures() -> None:
    policy, log = ParticipationPolicy(min_share=0.5), ParticipationLog()
    log.add(policy.judge(1, 3, 3))
    assert log.status("complete") == "complete"
    log.add(policy.judge(2, 3, 2))
    log.add(policy.judge(3, 3, 3))
    assert log.degraded_rounds == [2]
    assert log.status("complete") == "degraded"
    assert log.status("interrupted") == "interrupted" and log.status("failed") == "failed"
    assert log.summary() == {"degraded_rounds": [2], "replies": {"1": [3, 3], "2": [2, 3], "3": [3, 3]}}


# -- a Ray worker killed mid-run (real simulation) ----------------------------------------


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Ray's raylet and its workers descend from the driver)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def client_actor_pids() -> list[int]:
    """Our own Ray workers that host Flower's ClientAppActor (Ray sets the process title)."""
    pids = []
    for pid in _children(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ClientAppActor"):
                pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def test_killed_worker_is_restarted_and_later_rounds_have_every_client(tmp_path: Path) -> None:
    config = RunConfig(clients=3, rounds=3, local_epochs=1, attacks="none", run_dir=str(tmp_path), name="kill", seed=1)
    killed: list[int] = []
    after: list[int] = []

    def on_round(server_round: int, record: dict) -> None:
        if server_round == 1:
            victims = client_actor_pids()
            assert victims, "no ClientAppActor worker found"
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])
        if server_round == 2:
            # Rounds on digits take about a second, a worker's restart several: stand in for a
            # longer round so that round 3 starts after Ray has brought the worker back.
            deadline = time.monotonic() + 90
            while len(client_actor_pids()) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
        if server_round == 3:
            after.extend(client_actor_pids())

    result = simulate(config, on_round=on_round)
    records = result.run.metrics()
    assert killed and killed[0] not in after
    assert len(after) == 2, after  # the pool is back to its size (2 CPUs, 1 CPU per client): a new worker
    # Round 2 misses the client sent to the worker while Ray restarted it (calls are not
    # retried); such a round is marked, and the run goes on (2 of 3 >= min-client-share 0.5).
    for record in records[1:]:
        assert record["clients/degraded"] == float(record["clients/missing"] > 0), record
    assert records[-1]["clients/num-clients"] == 3 and records[-1]["clients/missing"] == 0
    degraded = [r["round"] for r in records[1:] if r["clients/degraded"]]
    assert result.summary["status"] == ("degraded" if degraded else "complete")
    assert result.summary["participation"]["degraded_rounds"] == degraded


class Nodes:
    def __init__(self, *counts: int) -> None:
        self.counts = list(counts)

    def get_node_ids(self) -> list[int]:
        count = self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]
        return list(range(count))


def test_quorum_waits_for_returning_nodes_then_goes_on_with_enough() -> None:
    policy = ParticipationPolicy(min_share=0.5)
    assert await_quorum(Nodes(3), policy, planned=3, server_round=1, timeout=0) == 3
    assert await_quorum(Nodes(2), policy, planned=3, server_round=2, timeout=0) == 2  # degraded, not stuck
    assert await_quorum(Nodes(0, 1, 2), policy, planned=4, server_round=2, timeout=5, poll=0.01) == 2


def test_quorum_gives_up_with_one_line_instead_of_waiting_forever() -> None:
    with pytest.raises(TooFewClients) as info:
        await_quorum(Nodes(1), ParticipationPolicy(min_share=0.5), planned=4, server_round=3, timeout=0.05, poll=0.01)
    message = str(info.value)
    assert "\n" not in message and "round 3" in message and "1 of 4" in message and "minimum 2" in message


def test_a_round_timeout_that_no_client_meets_fails_the_run_instead_of_reporting_success(tmp_path: Path) -> None:
    """Flower returns no message for a client that missed the deadline: the round must still
    count it as missing, so a run that trained nothing never ends ``complete``."""
    config = RunConfig(clients=3, rounds=2, local_epochs=1, attacks="none", run_dir=str(tmp_path), name="late",
                       round_timeout=0.05)  # far below a client's start-up and training time
    with pytest.raises(TooFewClients, match="no reply before the round timeout; raise --round-timeout"):
        simulate(config)
    summary = json.loads((tmp_path / "late" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["rounds_completed"] == 0
    assert len(summary["missing_clients"]["1"]) == 3
