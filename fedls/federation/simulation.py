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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fedls.config import RunConfig
from fedls.errors import FedlsError
from fedls.federation.client import SHARED_DATA_ENV, make_client_app, share_client_data
from fedls.federation.resources import Resources, resolve_resources
from fedls.federation.server import CuriousServer, ObserverFactory, RoundCallback, RunInterrupted, make_server_app
from fedls.run_dir import RunDirectory

if TYPE_CHECKING:
    from fedls.federation.observers import TaskProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedRun:
    """A config checked against the machine and the data, before anything is written."""

    config: RunConfig
    resources: Resources


def prepare(config: RunConfig) -> PreparedRun:
    """Validate the config, every option table, the resources, the dataset and the model;
    write nothing. Loading the dataset here (cached per process, so the server reuses it)
    turns a missing folder into an error before a run directory exists or Ray starts."""
    from fedls.assembly import build_global_model, load_splits
    from fedls.federation.observers import validate_attack_options

    config.check_registries()
    resources = resolve_resources(config.device, config.clients, config.client_cpus, config.client_gpus, config.ray_address)
    splits = load_splits(config)
    if config.clients > len(splits.train):
        raise FedlsError(f"{config.clients} clients but only {len(splits.train)} training samples; use fewer clients")
    validate_attack_options(config, splits)
    build_global_model(config, splits)
    return PreparedRun(config, resources)


@dataclass
class SimulationResult:
    run: RunDirectory
    summary: dict[str, Any]


class SimulationFailed(FedlsError):
    """The Flower/Ray backend or a server-side step failed."""


@contextmanager
def stop_on_interrupt(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C: ask the server to stop after the round in progress (the ServerApp runs in
    a thread and Flower's runtime does not pass KeyboardInterrupt on). Second Ctrl-C: leave now.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            os._exit(130)  # the user insists; finished rounds are already on disk
        stop.set()
        log.warning("interrupt: stopping after the current round (Ctrl-C again to quit at once)")

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def quiet_flower(verbose: bool) -> None:
    """Flower logs every message at INFO and client failures with full Ray tracebacks; fedls
    records failures itself (clients/missing, summary.json), so the terminal keeps its progress."""
    level = logging.INFO if verbose else logging.CRITICAL
    logging.getLogger("flwr").setLevel(level)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def summarise(config: RunConfig, server: CuriousServer, status: str, seconds: float, resources: Resources) -> dict[str, Any]:
    from fedls.federation.observers import enabled
    from fedls.provenance import provenance

    records = server.outcome.records
    final = {k: v for k, v in (records[-1] if records else {}).items() if k != "per_client"}
    initial = records[0] if records else {}
    gradient = config.gradient_attack.get("threat", "honest") if config.gradient_attack_on() else "off"
    return {
        **provenance(),
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

    Ctrl-C (SIGINT) stops after the round in progress, keeps every finished round, marks the
    run ``interrupted`` and raises :class:`RunInterrupted`; any backend failure marks it
    ``failed`` and raises :class:`SimulationFailed`. ``progress(task, done, total)`` reports the
    training of cached attack components (first use only) before Ray starts.
    """
    from flwr.simulation import run_simulation

    from fedls.assembly import load_splits
    from fedls.federation.observers import build_observers, warm_caches

    prepared = config if isinstance(config, PreparedRun) else prepare(config)
    observer_factory = observer_factory or build_observers  # the config's attack sections decide
    config, resources = prepared.config, prepared.resources
    if observer_factory is build_observers:
        warm_caches(config, load_splits(config), torch.device(resources.device), progress)
    run = RunDirectory.create(config)
    server = CuriousServer(config, run, resources, observer_factory, on_round)
    quiet_flower(verbose)
    ray_tmp = tempfile.mkdtemp(prefix="fedls-ray-")  # short path: Ray's socket paths are length-limited
    previous_env = {key: os.environ.get(key) for key in ("RAY_TMPDIR", SHARED_DATA_ENV, "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    started = time.perf_counter()
    status = "failed"
    try:
        _share_data_with_workers(config, resources, Path(ray_tmp) / "client-data")
        backend_config = resources.backend_config()
        _start_local_ray(resources, backend_config)
        with stop_on_interrupt(server.stop_requested):
            run_simulation(
                server_app=make_server_app(server),
                client_app=make_client_app(),
                num_supernodes=config.clients,
                backend_config=backend_config,
                verbose_logging=verbose,
            )
        if server.outcome.final_state is None:
            raise SimulationFailed("the simulation ended before the server finished; rerun with --verbose to see Flower's log")
        if server.outcome.rounds_done < config.rounds:
            raise SimulationFailed(f"only {server.outcome.rounds_done} of {config.rounds} rounds finished; rerun with --verbose")
        run.save_model(server.outcome.final_state)
        status = "complete"
    except (KeyboardInterrupt, RunInterrupted):
        status = "interrupted"
        if server.outcome.latest_model is not None and server.outcome.rounds_done > 0:
            run.save_model(server.outcome.latest_model.state_dict())  # the last finished round's model
        raise RunInterrupted(
            f"interrupted after round {server.outcome.rounds_done}; finished rounds are kept in {run.path}"
        ) from None
    except FedlsError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything from Ray/Flower/the server thread
        raise SimulationFailed(f"simulation failed: {type(exc).__name__}: {exc}") from exc
    finally:
        summary = summarise(config, server, status, time.perf_counter() - started, resources)
        run.write_summary(summary)
        _shutdown_ray()
        for key, value in previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return SimulationResult(run, summary)


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


def _start_local_ray(resources: Resources, backend_config: dict[str, Any]) -> None:
    """Start the local Ray instance here with Flower's own ``init_args``; Flower's RayBackend
    then finds Ray initialised and uses it.

    Flower's backend would start it with the driver's ``sys.path`` as a job *runtime
    environment* (``env_vars={"PYTHONPATH": ...}``). Ray prestarts one worker per CPU for a new
    driver, but in the default environment, so the client actors could not use them: Ray
    spawned two more Python processes for the actors while the two prestarted ones imported Ray
    and idled (seen with py-spy), on the same cores the actors' first imports need. Here the
    same ``PYTHONPATH`` reaches the workers through the environment they inherit from the
    raylet, and the actors start on the prestarted workers. An existing cluster
    (``ray_address``) is left to Flower, which connects to it as before.

    Ray also lowers its workers' priority to nice 15 (its ``worker_niceness``) to keep its own
    daemons responsive. Here the workers are the client actors that do all the training, while
    this process (nice 0) runs Flower's polling threads: under Linux's scheduler a nice-15
    thread gets 36/1024 of a core next to a busy nice-0 one, so training stalled whenever the
    driver or anything else on the machine was busy (measured on the 2-core machine under
    load: 20 clients' ``train_local`` took 33-38 s in an actor for 2-3 CPU-s, 4-8 s in a plain
    process; 2-3.6 s in an actor at nice 0). Workers keep the driver's priority.
    """
    import ray

    if resources.ray_address is not None or ray.is_initialized():
        return
    paths = [*sys.path, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    init_args = dict(backend_config.get("init_args", {}))
    init_args.setdefault("include_dashboard", False)
    init_args["_system_config"] = {**init_args.get("_system_config", {}), "worker_niceness": 0}
    ray.init(**init_args)


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort at exit
        log.debug("ray shutdown failed", exc_info=True)
