"""The local Ray instance of a simulation: started on loopback, without telemetry, and left
with nothing running (see :func:`start_ray` and :func:`kill_ray_processes`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedls.federation.resources import Resources

log = logging.getLogger(__name__)

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


def quiet_flower(verbose: bool) -> None:
    """Flower logs every message at INFO and client failures with full Ray tracebacks; fedls
    records failures itself (clients/missing, summary.json), so the terminal keeps its progress."""
    level = logging.INFO if verbose else logging.CRITICAL
    logging.getLogger("flwr").setLevel(level)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def start_ray(resources: Resources, backend_config: dict[str, Any]) -> None:
    """Start Ray here with Flower's own ``init_args`` (Flower's RayBackend then finds Ray
    initialised and uses it), so that fedls owns the start: the SIGTERM handler ``ray.init``
    installs can be replaced right after (see :class:`~fedls.federation.stop_signals.StopSignals`), and the local instance
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


def shutdown_ray() -> None:
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


def kill_ray_processes(ray_tmp: str, wait_s: float = 5.0) -> int:
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
