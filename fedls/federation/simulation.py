"""Run one federated experiment through Flower's simulation runtime (Ray backend)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fedls.config import RunConfig
from fedls.errors import FedlsError
from fedls.federation.client import SHARED_DATA_ENV, make_client_app, share_client_data
from fedls.federation.local_ray import flower_telemetry_off, kill_ray_processes, quiet_flower, shutdown_ray, start_ray
from fedls.federation.resources import Resources, resolve_resources
from fedls.federation.server import (
    CuriousServer,
    ObserverFactory,
    RoundCallback,
    RunInterrupted,
    ServerOutcome,
    make_server_app,
)
from fedls.federation.stop_signals import RunStopped, stop_on_interrupt
from fedls.provenance import provenance
from fedls.run_dir import RunDirectory

if TYPE_CHECKING:
    from fedls.federation.observers import TaskProgress

log = logging.getLogger(__name__)

# Instructions in flight per client that trains at once: one training, one queued, so that a
# worker finds its next client when it finishes one. Every stored instruction costs Flower's
# runtime a check per node every 0.1 s (see fedls.federation.paced_grid), so more in flight
# made rounds slower, not faster (scripts/bench_round.py, 100 clients: 2 per worker gave
# shorter rounds than 4 or 8).
INSTRUCTIONS_PER_WORKER = 2


@dataclass(frozen=True)
class PreparedRun:
    """A config checked against the machine and the data, before anything is written."""

    config: RunConfig
    resources: Resources


def prepare(config: RunConfig) -> PreparedRun:
    """Validate the config, every option table, the resources, the dataset and the model;
    write nothing. Loading the dataset here (cached per process, so the server reuses it)
    turns a missing folder into an error before a run directory exists or Ray starts; so does
    a partition the data cannot give (more by-class clients than a class has samples) and a
    run name that is taken."""
    from fedls.assembly import build_global_model, client_partition, load_splits
    from fedls.federation.observers import validate_attack_options

    config.check_registries()
    resources = resolve_resources(config.device, config.clients, config.client_cpus, config.client_gpus, config.ray_address)
    splits = load_splits(config)
    if config.clients > len(splits.train):
        raise FedlsError(f"{config.clients} clients but only {len(splits.train)} training samples; use fewer clients")
    client_partition(config, splits)
    validate_attack_options(config, splits)
    build_global_model(config, splits)
    RunDirectory.target(config)
    return PreparedRun(config, resources)


@dataclass
class SimulationResult:
    run: RunDirectory
    summary: dict[str, Any]


class SimulationFailed(FedlsError):
    """The Flower/Ray backend or a server-side step failed."""


def summarise(
    config: RunConfig,
    server: CuriousServer,
    status: str,
    seconds: float,
    resources: Resources,
    code: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The run's ``summary.json``; ``code`` is :func:`~fedls.provenance.provenance` when the
    caller took it already (it runs git, which a stop that must be quick cannot wait for)."""
    from fedls.federation.observers import enabled

    records = server.outcome.records
    final = {k: v for k, v in (records[-1] if records else {}).items() if k != "per_client"}
    initial = records[0] if records else {}
    gradient = config.gradient_attack.get("threat", "honest") if config.gradient_attack_on() else "off"
    return {
        **(code if code is not None else provenance()),
        "status": server.outcome.participation.status(status),
        "attacks": enabled(config),
        "threat_mode": {"gradient": gradient, "model": "honest" if config.model_attack_on() else "off"},
        "participation": server.outcome.participation.summary(),
        "name": server.run.path.name,
        "rounds_completed": server.outcome.rounds_done,
        "rounds_planned": config.rounds,
        "seconds": round(seconds, 2),
        "device": resources.device,
        "parallel_clients": resources.parallel_clients,
        "initial": {k: v for k, v in initial.items() if k.startswith("global/")},
        "final": final,
        "best_accuracy": max((r.get("global/accuracy", 0.0) for r in records), default=None),
        "missing_clients": {str(k): v for k, v in server.outcome.missing_clients.items() if v},
    }


def simulate(
    config: RunConfig | PreparedRun,
    observer_factory: ObserverFactory | None = None,
    on_round: RoundCallback | None = None,
    verbose: bool = False,
    progress: TaskProgress | None = None,
) -> SimulationResult:
    """Validate, create the run directory, run all rounds and write the summary.

    Ctrl-C (SIGINT) stops after the round in progress, keeps every finished round and the last
    finished round's model, marks the run ``interrupted`` and raises :class:`RunStopped`;
    SIGTERM or a second Ctrl-C writes the same summary and model and leaves the process at once
    with exit code ``128 + signum`` (see :class:`~fedls.federation.stop_signals.StopSignals`). Any backend
    failure marks the run ``failed`` and raises :class:`SimulationFailed`; a write that fails
    (a full disk) raises :class:`~fedls.run_dir.OutputError`. However the run ends, Ray is shut
    down, its processes are gone and its temporary folder is removed. ``progress(task, done,
    total)`` reports the training of cached attack components (first use only) before Ray starts.
    """
    flower_telemetry_off()
    from flwr.simulation import run_simulation

    from fedls.assembly import load_splits
    from fedls.federation.observers import build_observers, warm_caches

    prepared = config if isinstance(config, PreparedRun) else prepare(config)
    observer_factory = observer_factory or build_observers  # the config's attack sections decide
    config, resources = prepared.config, prepared.resources
    if observer_factory is build_observers:
        warm_caches(config, load_splits(config), torch.device(resources.device), progress)
    run = RunDirectory.create(config)
    last_model = LastFinishedModel(on_round)
    window = INSTRUCTIONS_PER_WORKER * resources.parallel_clients
    server = CuriousServer(config, run, resources, observer_factory, last_model, dispatch_window=window)
    last_model.outcome = server.outcome
    quiet_flower(verbose)
    ray_tmp = tempfile.mkdtemp(prefix="fedls-ray-")  # short path: Ray's socket paths are length-limited
    end = RunEnd(config, server, resources, ray_tmp, last_model)
    os.environ["RAY_TMPDIR"] = ray_tmp
    status = "failed"
    with stop_on_interrupt(server.stop_requested, end.quit_now) as signals:
        try:
            _share_data_with_workers(config, resources, Path(ray_tmp) / "client-data")
            backend_config = resources.backend_config()
            ray_started = time.perf_counter()
            start_ray(resources, backend_config)
            end.timing["ray_start_s"] = round(time.perf_counter() - ray_started, 2)
            signals.install()  # ray.init put its own SIGTERM handler in place
            if server.stop_requested.is_set():
                raise RunInterrupted("stopped before the first round")
            run_simulation(
                server_app=make_server_app(server),
                client_app=make_client_app(),
                num_supernodes=config.clients,
                backend_config=backend_config,
                verbose_logging=verbose,
            )
            done = server.outcome.rounds_done
            if server.outcome.final_state is None:
                raise SimulationFailed("the simulation ended before the server finished; rerun with --verbose for Flower's log")
            if done < config.rounds:
                raise SimulationFailed(f"only {done} of {config.rounds} rounds finished; rerun with --verbose")
            run.save_model(server.outcome.final_state)
            status = "complete"
        except (KeyboardInterrupt, RunInterrupted):
            status = "interrupted"
            end.save_last_model()
            raise RunStopped(
                f"interrupted after round {server.outcome.rounds_done}; finished rounds are kept in {run.path}",
                signals.signum or signal.SIGINT,
            ) from None
        except FedlsError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything from Ray/Flower/the server thread
            raise SimulationFailed(f"simulation failed: {type(exc).__name__}: {exc}") from exc
        finally:
            # An error already on its way out is the one the user needs; a summary that cannot
            # be written then is only logged (on a full disk it usually fails the same way).
            end.finish(status, raise_write_error=sys.exc_info()[1] is None)
    return SimulationResult(run, end.summary)


class LastFinishedModel:
    """The round callback, plus a copy of the global model as each round ends.

    Copied in the server's thread, between rounds, while nothing changes the model; a stop
    that cannot wait for the server (:meth:`RunEnd.quit_now`) saves this copy instead of a
    model the server may be halfway through loading the next round into."""

    def __init__(self, on_round: RoundCallback | None) -> None:
        self.on_round = on_round
        self.outcome: ServerOutcome | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def __call__(self, server_round: int, record: dict[str, Any]) -> None:
        model = self.outcome.latest_model if self.outcome is not None else None
        if server_round > 0 and model is not None:
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if self.on_round is not None:
            self.on_round(server_round, record)


class RunEnd:
    """What every way out of a run does, once: summary.json, then Ray shut down, its
    processes gone, its temporary folder removed and the environment restored.

    :meth:`finish` is the orderly way (after the rounds or an error); :meth:`quit_now` the way
    that cannot wait for the server (SIGTERM, a second Ctrl-C), from the signal handler, which
    runs in the main thread between two of its steps. A signal while :meth:`finish` writes the
    summary is left to it; one while it shuts Ray down (which can hang on a broken instance)
    kills Ray's processes and leaves."""

    def __init__(
        self, config: RunConfig, server: CuriousServer, resources: Resources, ray_tmp: str, last_model: LastFinishedModel
    ) -> None:
        self.config = config
        self.server = server
        self.resources = resources
        self.ray_tmp = ray_tmp
        self.last_model = last_model
        self.started = time.perf_counter()
        self.code = provenance()  # the code that runs is the code loaded now
        self.summary: dict[str, Any] = {}
        self.timing: dict[str, float] = {}  # start-up costs worth seeing in summary.json (seconds)
        self._summary_final = False  # finish() has written the summary of how the run ended
        self._ended = False
        self._previous_env = {key: os.environ.get(key) for key in ("RAY_TMPDIR", SHARED_DATA_ENV, "PYTHONPATH")}
        self._lock = threading.Lock()

    def save_last_model(self, server_stopped: bool = True) -> None:
        """The last finished round's global model (none before round 1 has finished); the
        server's live model only once the server has stopped and nothing changes it."""
        outcome = self.server.outcome
        state = self.last_model.state
        if state is None and server_stopped and outcome.latest_model is not None and outcome.rounds_done > 0:
            state = outcome.latest_model.state_dict()
        if state is not None:
            self.server.run.save_model(state)

    def finish(self, status: str, raise_write_error: bool = True) -> None:
        with self._lock:
            error = self._write_summary(status)
            self._summary_final = True
        self._release()
        self._ended = True
        if error is not None:
            if raise_write_error:
                raise error
            # the error on its way out is the user's one line; on a full disk this one follows from it
            log.info("%s", error)

    def quit_now(self, signum: int) -> None:
        """Write the summary (and the last finished round's model), stop Ray, leave the process."""
        if self._ended:  # the run is over and its summary written; the caller's handlers are back
            return
        if not self._lock.acquire(blocking=False):
            log.warning("already stopping: writing the summary")
            return
        if not self._summary_final:
            # summary.json first: it is what a scheduler's SIGKILL, seconds away, must not prevent
            error = self._write_summary("interrupted")
            try:
                self.save_last_model(server_stopped=False)
            except FedlsError as exc:
                error = error or exc
            log.warning(
                "%s: stopped after round %d; %s", signal.Signals(signum).name, self.server.outcome.rounds_done,
                error or f"finished rounds are kept in {self.server.run.path} (summary.json says 'interrupted')",
            )
        # Ray's processes are killed, not asked: a graceful ray.shutdown() from a signal handler
        # could wait on the very calls the main thread was interrupted in. Everything else comes
        # first because Ray's library ends this process (exit code 1) soon after its raylet has
        # died: after a SIGTERM to the whole process group the raylet may already be going, and
        # its death by the kill below starts the same countdown. The folder can go before its
        # processes do (Linux keeps files open by a process readable until closed).
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        kill_ray_processes(self.ray_tmp, wait_s=0.5)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        logging.shutdown()
        os._exit(128 + signum)

    def _write_summary(self, status: str) -> FedlsError | None:
        seconds = time.perf_counter() - self.started
        summary = summarise(self.config, self.server, status, seconds, self.resources, self.code)
        self.summary = {**summary, "timing": dict(self.timing)}
        try:
            self.server.run.write_summary(self.summary)
        except FedlsError as exc:
            return exc
        return None

    def _release(self) -> None:
        shutdown_ray()
        killed = kill_ray_processes(self.ray_tmp)
        if killed:
            log.info("stopped %d Ray process(es) that outlived ray.shutdown()", killed)
        for key, value in self._previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def _share_data_with_workers(config: RunConfig, resources: Resources, folder: Path) -> None:
    """Hand the local Ray workers the training split and partition this process already holds
    (memory-mapped, see ``client.share_client_data``), so that no worker loads the dataset.
    Ray's workers inherit this process's environment through the raylet it starts; workers of
    an existing cluster (``ray_address``) do not, and load the data themselves as before."""
    from fedls.assembly import load_splits

    if resources.ray_address is not None:
        return
    if share_client_data(folder, config, load_splits(config)):  # load_splits is cached: prepare() loaded it
        os.environ[SHARED_DATA_ENV] = str(folder)
