"""The ServerApp: a curious FedAvg server that evaluates and attacks every round.

:class:`CuriousServer` assembles one run (model, observers, strategy) and hands Flower the
round's steps as a :class:`RoundLoop`, an object whose methods are the named steps of a round:

1. ``select_probes`` — malicious threat modes only: which clients are asked for a probe
   (merged across observers);
2. ``observe_updates`` — every observer gets the round's :class:`ServerView` (and, apart,
   the ground truth for its scorer) before aggregation;
3. ``aggregate_client_metrics`` — the clients' training metrics;
4. ``evaluate`` (Flower's ``evaluate_fn``, after aggregation) — time the round, evaluate
   utility, judge participation, attack the global model, write the round, report progress,
   honour a stop request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedls.assembly import build_global_model, load_splits
from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.errors import FedlsError
from fedls.federation.faults import Participation, ParticipationLog, ParticipationPolicy, TooFewClients, await_quorum
from fedls.federation.observers import RoundObserver
from fedls.federation.paced_grid import PacedGrid
from fedls.federation.resources import Resources
from fedls.federation.tracking import RoundTracker
from fedls.metrics.utility import evaluate
from fedls.run_dir import RunDirectory
from fedls.threat_model import GroundTruth, ProbeRequest, ServerView
from fedls.training.seeding import derive_seed, seed_everything
from strategies.central_dp import CuriousCentralDP
from strategies.curious_fedavg import ClientSetup, CuriousFedAvg, aggregate_client_metrics

log = logging.getLogger(__name__)

RoundCallback = Callable[[int, dict[str, Any]], None]
ObserverFactory = Callable[[RunConfig, DatasetSplits, torch.device], list[RoundObserver]]
SAMPLING_STREAM = 104_729  # the stream that draws each round's clients (fraction_train < 1)


class RunInterrupted(FedlsError):
    """The user stopped the run; finished rounds are on disk."""


@dataclass
class ServerOutcome:
    """Filled in while the ServerApp runs (it runs in a thread of the calling process)."""

    rounds_done: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    missing_clients: dict[int, list[str]] = field(default_factory=dict)
    participation: ParticipationLog = field(default_factory=ParticipationLog)
    final_state: dict[str, torch.Tensor] | None = None
    latest_model: torch.nn.Module | None = None  # the global model of the last evaluated round


class RoundLoop:
    """The steps of every round, in the order Flower calls them (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        splits: DatasetSplits,
        model: torch.nn.Module,
        observers: list[RoundObserver],
        tracker: RoundTracker,
        outcome: ServerOutcome,
        device: torch.device,
        on_round: RoundCallback | None = None,
        stop_requested: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.splits = splits
        self.model = model
        self.observers = observers
        self.tracker = tracker
        self.outcome = outcome
        self.device = device
        self.on_round = on_round
        self.stop_requested = stop_requested or threading.Event()
        self.policy = ParticipationPolicy(min_share=config.min_client_share)
        self.planned = max(1, int(config.clients * config.fraction_train))  # clients a full round samples
        self.strategy: CuriousFedAvg | None = None  # set once the strategy exists
        self._round_started = time.perf_counter()

    # 1 -------------------------------------------------------------------------------
    def select_probes(self, server_round: int, client_ids: list[int]) -> dict[int, ProbeRequest]:
        """Probe requests of every observer, merged; two observers asking the same client is a
        configuration conflict, so the first one's request stands and the clash is logged."""
        merged: dict[int, ProbeRequest] = {}
        for observer in self.observers:
            for client, request in observer.probe_requests(server_round, client_ids).items():
                if client in merged and merged[client] != request:
                    log.warning("round %d: two observers probe client %d differently; keeping the first", server_round, client)
                    continue
                merged[client] = request
        return merged

    # 2 -------------------------------------------------------------------------------
    def observe_updates(self, view: ServerView, truth: Mapping[int, GroundTruth]) -> None:
        for observer in self.observers:
            if observer.watches_updates:
                observer.on_client_updates(view, truth, self.tracker)

    # 3 -------------------------------------------------------------------------------
    def aggregate_client_metrics(self, contents: list[RecordDict], key: str) -> MetricRecord:
        record = aggregate_client_metrics(contents, key)
        self.tracker.add({k: float(v) for k, v in record.items() if isinstance(v, (int, float))}, prefix="clients/")
        return record

    # 4 -------------------------------------------------------------------------------
    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Flower's ``evaluate_fn``: everything that happens after aggregation."""
        started = time.perf_counter()
        if server_round > 0:
            # client training + transport + aggregation + attacks on updates of this round
            self.tracker.add({"round_seconds": started - self._round_started}, prefix="time/")
        utility = self.evaluate_utility(arrays)
        if server_round > 0:
            self.record_training(server_round)
        self.attack_global_model(server_round)
        self.tracker.add({"server_eval_seconds": time.perf_counter() - started}, prefix="time/")
        self.finish_round(server_round)
        return MetricRecord({k: float(v) for k, v in utility.items()})

    def evaluate_utility(self, arrays: ArrayRecord) -> dict[str, float]:
        self.model.load_state_dict(arrays.to_torch_state_dict())
        self.outcome.latest_model = self.model
        utility = evaluate(self.model, self.splits.test, self.device)
        self.tracker.add(utility, prefix="global/")
        return utility

    def record_training(self, server_round: int) -> None:
        """The α in force and who took part; stops the run below the minimum participation."""
        strategy = self._strategy()
        self.tracker.add({"alpha": strategy.alpha_for(server_round)}, prefix="train/")
        missing = strategy.missing_clients.get(server_round, [])
        sampled = strategy.sampled_clients.get(server_round, 0)
        self.tracker.add({"missing": float(len(missing))}, prefix="clients/")
        self.outcome.missing_clients[server_round] = missing
        # Judged against the planned round, not against who was sampled: a SuperNode that is
        # gone is not sampled at all, and the round must still count as degraded.
        planned = max(self.planned, sampled)
        verdict = self.outcome.participation.add(self.policy.judge(server_round, planned, sampled - len(missing)))
        self.tracker.scalars(verdict.metrics())
        if verdict.degraded:
            log.warning("%s", verdict.message + (f" ({missing[0]})" if missing else ""))
        if verdict.participation is Participation.ABORT:
            self.tracker.flush_round()
            reason = f"; first failure: {missing[0]}" if missing else ""
            raise TooFewClients(f"{verdict.message}{reason}")

    def attack_global_model(self, server_round: int) -> None:
        for observer in self.observers:
            observer.on_global_model(server_round, self.model, self.tracker)

    def finish_round(self, server_round: int) -> None:
        record = self.tracker.flush_round()
        self.outcome.records.append(record)
        self.outcome.rounds_done = server_round
        if self.on_round is not None:
            self.on_round(server_round, record)
        if self.stop_requested.is_set() and server_round < self.config.rounds:
            raise RunInterrupted(f"stopped by the user after round {server_round}")
        self.tracker.start_round(server_round + 1)
        self._round_started = time.perf_counter()

    def _strategy(self) -> CuriousFedAvg:
        if self.strategy is None:
            raise RuntimeError("the round loop has no strategy yet")
        return self.strategy


class CuriousServer:
    """Holds one run's server-side state; :meth:`main` is the ServerApp's entry point."""

    def __init__(
        self,
        config: RunConfig,
        run: RunDirectory,
        resources: Resources,
        observer_factory: ObserverFactory | None = None,
        on_round: RoundCallback | None = None,
        dispatch_window: int | None = None,
    ) -> None:
        """``dispatch_window``: most instructions in flight at once in the simulation (see
        :class:`~fedls.federation.paced_grid.PacedGrid`); None leaves every round to Flower's
        grid (a deployed federation)."""
        self.config = config
        self.run = run
        self.dispatch_window = dispatch_window
        self.resources = resources
        self.observer_factory = observer_factory
        self.on_round = on_round
        self.outcome = ServerOutcome()
        self.stop_requested = threading.Event()
        self.device = torch.device(resources.device)

    def client_setup(self) -> ClientSetup:
        return ClientSetup(self.config.to_toml(), self.resources.device, max(1, int(self.resources.client_cpus)))

    def main(self, grid: Grid, context: Context) -> None:
        config = self.config
        splits = load_splits(config)
        seed_everything(derive_seed(config.seed, 0, 10**6))
        model = build_global_model(config, splits).to(self.device)
        initial = ArrayRecord(model.state_dict())  # taken before observers draw from any random stream
        observers = self.observer_factory(config, splits, self.device) if self.observer_factory else []
        tracker = RoundTracker(self.run)
        loop = RoundLoop(config, splits, model, observers, tracker, self.outcome, self.device, self.on_round, self.stop_requested)
        per_round = loop.planned
        # Rounds go on, marked degraded, while at least the policy's share of clients is there;
        # with every node up, FedAvg still samples all of them (fraction_train of the available).
        quorum = max(1, loop.policy.required(loop.policy.min_share, per_round))
        central = config.central_dp_options()
        watching = any(observer.watches_updates for observer in observers)
        strategy = CuriousFedAvg(
            schedule=config.schedule(),
            recipe=config.recipe(),
            setup=self.client_setup(),
            num_clients=config.clients,
            on_updates=loop.observe_updates if watching else None,
            probe_selector=loop.select_probes if observers else None,
            before_round=lambda grid, r: await_quorum(grid, loop.policy, per_round, r, config.round_timeout),
            # Updates are averaged as they arrive unless something needs a round's updates
            # together: an attack observing them, or central DP clipping them first.
            stream_updates=not watching and central is None,
            fraction_train=config.fraction_train,
            sampling_seed=derive_seed(config.seed, SAMPLING_STREAM),
            roll_call_timeout=config.round_timeout,
            fraction_evaluate=0.0,
            min_train_nodes=quorum,
            min_available_nodes=quorum,
            train_metrics_aggr_fn=loop.aggregate_client_metrics,
        )
        loop.strategy = strategy
        runner: Strategy = strategy
        if central is not None:
            runner = CuriousCentralDP(strategy, central.noise_multiplier, central.clipping_norm, num_sampled_clients=per_round)
        paced = PacedGrid(grid, self.dispatch_window, on_reply=strategy.receive)
        tracker.start_round(0)
        status = "failed"
        try:
            result = runner.start(
                grid=paced, initial_arrays=initial, num_rounds=config.rounds, timeout=config.round_timeout,
                train_config=None, evaluate_fn=loop.evaluate,
            )
            self.outcome.final_state = result.arrays.to_torch_state_dict() if len(result.arrays) else model.state_dict()
            status = "complete" if self.outcome.rounds_done >= config.rounds else "failed"
        except RunInterrupted:
            status = "interrupted"
            raise
        finally:
            tracker.finish(status)  # HParams end status and the "summary" text
            tracker.close()


def make_server_app(server: CuriousServer) -> ServerApp:
    app = ServerApp()
    app.main()(server.main)
    return app


