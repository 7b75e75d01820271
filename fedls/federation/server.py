"""The ServerApp: a curious FedAvg server that evaluates and attacks every round."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedls.assembly import build_global_model, data_options
from fedls.config import RunConfig
from fedls.data import DatasetSplits, load_dataset_cached
from fedls.errors import FedlsError
from fedls.federation.resources import Resources
from fedls.federation.tracking import RoundTracker
from fedls.metrics.utility import evaluate
from fedls.run_dir import RunDirectory
from fedls.training.seeding import derive_seed, seed_everything
from strategies.central_dp import CuriousCentralDP, central_dp_options
from strategies.curious_fedavg import CuriousFedAvg, aggregate_client_metrics
from strategies.observers import GroundTruth, RoundObserver, ServerView

log = logging.getLogger(__name__)

RoundCallback = Callable[[int, dict[str, Any]], None]
ObserverFactory = Callable[[RunConfig, DatasetSplits, torch.device], list[RoundObserver]]


class RunInterrupted(FedlsError):
    """The user stopped the run; finished rounds are on disk."""


class ClientsFailed(FedlsError):
    """Every client of a round failed: continuing would only re-evaluate an unchanged model."""


@dataclass
class ServerOutcome:
    """Filled in while the ServerApp runs (it runs in a thread of the calling process)."""

    rounds_done: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    missing_clients: dict[int, list[str]] = field(default_factory=dict)
    final_state: dict[str, torch.Tensor] | None = None
    latest_model: torch.nn.Module | None = None  # the global model of the last evaluated round


class CuriousServer:
    """Holds one run's server-side state; :meth:`main` is the ServerApp's entry point."""

    def __init__(
        self,
        config: RunConfig,
        run: RunDirectory,
        resources: Resources,
        observer_factory: ObserverFactory | None = None,
        on_round: RoundCallback | None = None,
    ) -> None:
        self.config = config
        self.run = run
        self.resources = resources
        self.observer_factory = observer_factory
        self.on_round = on_round
        self.outcome = ServerOutcome()
        self.stop_requested = threading.Event()
        self.device = torch.device(resources.device)

    def train_config(self) -> ConfigRecord:
        """What clients receive each round (α and the round number are added per round)."""
        return ConfigRecord(
            {
                "run-config": self.config.to_toml(),
                "device": self.resources.device,
                "threads": max(1, int(self.resources.client_cpus)),
                "lr": self.config.lr,
                "local-epochs": self.config.local_epochs,
                "batch-size": self.config.batch_size,
            }
        )

    def main(self, grid: Grid, context: Context) -> None:
        config = self.config
        splits = load_dataset_cached(config.dataset, data_options(config))
        seed_everything(derive_seed(config.seed, 0, 10**6))
        model = build_global_model(config, splits).to(self.device)
        observers = self.observer_factory(config, splits, self.device) if self.observer_factory else []
        tracker = RoundTracker(self.run)
        strategy: CuriousFedAvg

        def on_updates(view: ServerView, truth: dict[int, GroundTruth]) -> None:
            for observer in observers:
                tracker.add(observer.on_client_updates(view, truth, tracker.log_image))

        def aggregate(contents: list[RecordDict], key: str) -> MetricRecord:
            record = aggregate_client_metrics(contents, key)
            tracker.add({k: float(v) for k, v in record.items()}, prefix="clients/")
            return record

        round_started = [time.perf_counter()]

        def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            started = time.perf_counter()
            if server_round > 0:
                # client training + transport + aggregation + attacks on updates of this round
                tracker.add({"round_seconds": started - round_started[0]}, prefix="time/")
            model.load_state_dict(arrays.to_torch_state_dict())
            self.outcome.latest_model = model
            utility = evaluate(model, splits.test, self.device)
            tracker.add(utility, prefix="global/")
            if server_round > 0:
                tracker.add({"alpha": strategy.alpha_for(server_round)}, prefix="train/")
                missing = strategy.missing_clients.get(server_round, [])
                tracker.add({"missing": float(len(missing))}, prefix="clients/")
                self.outcome.missing_clients[server_round] = missing
                if missing and len(missing) >= strategy.sampled_clients.get(server_round, 0):
                    tracker.flush_round()
                    raise ClientsFailed(f"round {server_round}: every client failed ({missing[0]}); rerun with --verbose for details")
            for observer in observers:
                tracker.add(observer.on_global_model(server_round, model, tracker.log_image))
            tracker.add({"server_eval_seconds": time.perf_counter() - started}, prefix="time/")
            record = tracker.flush_round()
            self.outcome.records.append(record)
            self.outcome.rounds_done = server_round
            if self.on_round is not None:
                self.on_round(server_round, record)
            if self.stop_requested.is_set() and server_round < config.rounds:
                raise RunInterrupted(f"stopped by the user after round {server_round}")
            tracker.start_round(server_round + 1)
            round_started[0] = time.perf_counter()
            return MetricRecord({k: float(v) for k, v in utility.items()})

        per_round = max(1, int(config.clients * config.fraction_train))
        strategy = CuriousFedAvg(
            schedule=config.schedule(),
            on_updates=on_updates if observers else None,
            probe_selector=_probe_selector(observers),
            fraction_train=config.fraction_train,
            fraction_evaluate=0.0,
            min_train_nodes=per_round,
            min_available_nodes=config.clients,
            train_metrics_aggr_fn=aggregate,
        )
        runner: Strategy = strategy
        if config.central_dp:
            noise, clip = central_dp_options(config.central_dp)
            runner = CuriousCentralDP(strategy, noise, clip, num_sampled_clients=per_round)
        tracker.start_round(0)
        try:
            result = runner.start(
                grid=grid,
                initial_arrays=ArrayRecord(model.state_dict()),
                num_rounds=config.rounds,
                timeout=config.round_timeout,
                train_config=self.train_config(),
                evaluate_fn=evaluate_global,
            )
            self.outcome.final_state = result.arrays.to_torch_state_dict() if len(result.arrays) else model.state_dict()
        finally:
            tracker.close()


def _probe_selector(observers: list[RoundObserver]):  # noqa: ANN202 - optional callable
    """The first observer that asks for probes (``select_probes``) decides which clients to probe."""
    for observer in observers:
        selector = getattr(observer, "select_probes", None)
        if selector is not None:
            return selector
    return None


def make_server_app(server: CuriousServer) -> ServerApp:
    app = ServerApp()
    app.main()(server.main)
    return app
