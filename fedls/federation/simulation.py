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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fedls.config import RunConfig
from fedls.errors import FedlsError
from fedls.federation.client import SHARED_DATA_ENV, make_client_app, share_client_data
from fedls.federation.resources import Resources, resolve_resources
from fedls.federation.server import (
    CuriousServer,
    ObserverFactory,
    RoundCallback,
    RunInterrupted,
    ServerOutcome,
    make_server_app,
)
from fedls.provenance import provenance
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


class RunStopped(RunInterrupted):
    """The run was stopped by a signal (SIGINT: Ctrl-C, SIGTERM: ``timeout``, a batch scheduler);
    the exit code a shell expects for it is ``128 + signum``."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
TELEMETRY_ENV = "FLWR_TELEMETRY_ENABLED"  # flwr/supercore/telemetry.py: "1" (default) sends events
RAY_USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"
LOOPBACK = "127.0.0.1"


def flower_telemetry_off() -> None:
    """Switch Flower's telemetry off unless the user chose a value for ``FLWR_TELEMETRY_ENABLED``.

    Flower posts an event to telemetry.flower.ai at every ``run_simulation`` (enter and leave,
    with platform details) unless the variable is ``0``. It reads the variable once, when
    ``flwr`` is first imported (any fedls module that speaks Flower's message types imports it),
    so the module's copy is set too; the environment carries the choice to the Ray workers,
    whose client code imports Flower again. Ray's own usage statistics are switched off the
    same way (``RAY_USAGE_STATS_ENABLED``)."""
    os.environ.setdefault(TELEMETRY_ENV, "0")
    os.environ.setdefault(RAY_USAGE_STATS_ENV, "0")
    telemetry = sys.modules.get("flwr.supercore.telemetry")
    if telemetry is not None and hasattr(telemetry, TELEMETRY_ENV):
        setattr(telemetry, TELEMETRY_ENV, os.environ[TELEMETRY_ENV])


class StopSignals:
    """SIGINT and SIGTERM while a run is going.

    Ctrl-C (SIGINT): ask the server to stop after the round in progress (the ServerApp runs in
    a thread and Flower's runtime does not pass KeyboardInterrupt on). Ray's processes block
    SIGINT, so a terminal's Ctrl-C, which reaches the whole foreground process group, leaves
    them running and the round can finish.

    SIGTERM, or a second Ctrl-C: ``quit_now(signum)``, which writes the summary, stops Ray and
    leaves at once. A round in progress cannot be waited for after SIGTERM: ``timeout`` sends it
    to the whole process group and a batch scheduler to every process of the job, so Ray's
    GCS, raylet and workers end with it (seen: every client of the round failed, and the
    backend's shutdown then waited for a GCS that was gone), and the scheduler's SIGKILL
    follows within seconds.

    Only the main thread can own signal handlers; elsewhere (a caller's worker thread) nothing
    is installed and the caller's own handling stays as it is.
    """

    def __init__(self, stop: threading.Event, quit_now: Callable[[int], None]) -> None:
        self.stop = stop
        self.quit_now = quit_now
        self.signum: int | None = None  # the signal that stopped the run
        self._previous: dict[int, Any] = {}

    @property
    def active(self) -> bool:
        return threading.current_thread() is threading.main_thread()

    def install(self) -> None:
        """(Re)install the handlers; again after ``ray.init``, which replaces the SIGTERM handler
        of the driver with one that raises SystemExit wherever the main thread happens to be."""
        if not self.active:
            return
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self.handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def handle(self, signum: int, frame: object) -> None:
        first = self.signum is None
        self.signum = signum
        self.stop.set()
        if first and signum == signal.SIGINT:
            log.warning("interrupt: stopping after the current round (Ctrl-C again to quit at once)")
            return
        self.quit_now(signum)


@contextmanager
def stop_on_interrupt(stop: threading.Event, quit_now: Callable[[int], None] | None = None) -> Iterator[StopSignals]:
    """:class:`StopSignals` installed for the block; the previous handlers come back after it.
    Without ``quit_now`` a second signal leaves with ``os._exit(128 + signum)``."""
    signals = StopSignals(stop, quit_now or (lambda signum: os._exit(128 + signum)))
    signals.install()
    try:
        yield signals
    finally:
        signals.restore()


def quiet_flower(verbose: bool) -> None:
    """Flower logs every message at INFO and client failures with full Ray tracebacks; fedls
    records failures itself (clients/missing, summary.json), so the terminal keeps its progress."""
    level = logging.INFO if verbose else logging.CRITICAL
    logging.getLogger("flwr").setLevel(level)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


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
    with exit code ``128 + signum`` (see :class:`StopSignals`). Any backend
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
    server = CuriousServer(config, run, resources, observer_factory, last_model)
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
            _start_ray(resources, backend_config)
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
        _kill_ray_processes(self.ray_tmp, wait_s=0.5)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        logging.shutdown()
        os._exit(128 + signum)

    def _write_summary(self, status: str) -> FedlsError | None:
        seconds = time.perf_counter() - self.started
        self.summary = summarise(self.config, self.server, status, seconds, self.resources, self.code)
        try:
            self.server.run.write_summary(self.summary)
        except FedlsError as exc:
            return exc
        return None

    def _release(self) -> None:
        _shutdown_ray()
        killed = _kill_ray_processes(self.ray_tmp)
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


def _start_ray(resources: Resources, backend_config: dict[str, Any]) -> None:
    """Start Ray here with Flower's own ``init_args`` (Flower's RayBackend then finds Ray
    initialised and uses it), so that fedls owns the start: the SIGTERM handler ``ray.init``
    installs can be replaced right after (see :class:`StopSignals`), and the local instance
    listens on loopback only.

    A local instance: Flower's backend would start it with the driver's ``sys.path`` as a job
    *runtime environment* (``env_vars={"PYTHONPATH": ...}``). Ray prestarts one worker per CPU
    for a new driver, but in the default environment, so the client actors could not use them:
    Ray spawned two more Python processes for the actors while the two prestarted ones imported
    Ray and idled (seen with py-spy), on the same cores the actors' first imports need. Here
    the same ``PYTHONPATH`` reaches the workers through the environment they inherit from the
    raylet, and the actors start on the prestarted workers.

    Ray also lowers its workers' priority to nice 15 (its ``worker_niceness``) to keep its own
    daemons responsive. Here the workers are the client actors that do all the training, while
    this process (nice 0) runs Flower's polling threads: under Linux's scheduler a nice-15
    thread gets 36/1024 of a core next to a busy nice-0 one, so training stalled whenever the
    driver or anything else on the machine was busy (measured on the 2-core machine under
    load: 20 clients' ``train_local`` took 33-38 s in an actor for 2-3 CPU-s, 4-8 s in a plain
    process; 2-3.6 s in an actor at nice 0). Workers keep the driver's priority.

    An existing cluster (``ray_address``) is joined exactly as Flower's backend would join it
    (``PYTHONPATH`` as the job's runtime environment: the cluster's workers do not inherit
    this process's environment), and its network settings are the cluster's.
    """
    import ray

    if ray.is_initialized():
        return
    paths = [*sys.path, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    pythonpath = os.pathsep.join(paths)
    os.environ["PYTHONPATH"] = pythonpath
    init_args = dict(backend_config.get("init_args", {}))
    init_args.setdefault("include_dashboard", False)
    if resources.ray_address is not None:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **init_args)
        return
    init_args["_system_config"] = {**init_args.get("_system_config", {}), "worker_niceness": 0}
    with _single_machine_ray():
        ray.init(_node_ip_address=LOOPBACK, **init_args)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        log.warning("Ray's ports listen on %s, not only on loopback (this Ray version ignored the setting)", node_ip)


@contextmanager
def _single_machine_ray() -> Iterator[None]:
    """Let ``ray.init(_node_ip_address="127.0.0.1")`` mean loopback.

    Ray's GCS, raylet (node and object manager) and workers listen on all interfaces unless
    the node's address is 127.0.0.1, and on Linux ``ray.init`` replaces 127.0.0.1 by the
    machine's outward address (``services.resolve_ip_for_localhost``) unless it is in the
    single-machine mode it uses on macOS and Windows (``ray_constants.ENABLE_RAY_CLUSTER``, read
    at call time). A simulation is one machine: that mode, only for the start of the local
    instance, keeps every port on 127.0.0.1 (checked with ``ss -ltnp``)."""
    try:
        from ray._private import ray_constants
    except ImportError:  # another Ray layout: the check after ray.init reports what happened
        yield
        return
    previous = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort at exit
        log.debug("ray shutdown failed", exc_info=True)


def ray_processes(ray_tmp: str) -> list[int]:
    """Processes of the local Ray instance that uses ``ray_tmp``, this one excepted.

    Found by what they carry, not by the process tree (a worker or agent whose raylet died has
    been re-parented and may still run): the ``RAY_TMPDIR`` in their environment (the GCS, the
    raylet and every worker inherit it from this process; the folder is fresh from ``mkdtemp``),
    or an open file under that folder (Ray's session logs). The second catches Ray's agents:
    their process titles (``ray::RuntimeEnvAgent``) overwrite part of the environment that
    ``/proc`` shows, and the variable was seen missing from it after the driver had ended."""
    marker = f"RAY_TMPDIR={ray_tmp}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and (
                marker in (proc / "environ").read_bytes().split(b"\0") or _has_open_file_under(proc, ray_tmp)
            ):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _has_open_file_under(proc: Path, folder: str) -> bool:
    prefix = folder.rstrip(os.sep) + os.sep
    for fd in (proc / "fd").iterdir():
        try:
            if os.readlink(fd).startswith(prefix):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def _kill_ray_processes(ray_tmp: str, wait_s: float = 5.0) -> int:
    """SIGKILL what is left of the local Ray instance and wait until it is gone; returns how
    many processes there were. Orphaned workers otherwise kept training for 30-90 s after the
    driver had ended."""
    killed: set[int] = set()
    deadline = time.monotonic() + wait_s
    # Again until none is found: a raylet that has not died yet may still start a worker (it
    # restarts dead client actors). A killed child of this process stays a zombie until it is
    # reaped, but a zombie has no environment or open files left, so it is not listed.
    while pids := ray_processes(ray_tmp):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.add(pid)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return len(killed)
