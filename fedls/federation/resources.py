"""Devices and Flower/Ray client resources, validated against the machine before Ray starts.

Ray's actor pool stays empty when a client asks for more than the machine has, and the
ServerApp would then wait for its round timeout (flower issue 4476); fedls refuses such a
request up front instead.

Two more things travel through Flower's ``backend_config`` from here:

* an existing Ray cluster (``--ray-address`` or Ray's own ``RAY_ADDRESS``): Flower's RayBackend
  hands ``init_args`` to ``ray.init``, so the address goes there, and the machine-size
  arguments must not (``ray.init`` refuses ``num_cpus``/``num_gpus`` when it connects);
* actor restarts: Flower's ``BasicActorPool`` creates each client actor with
  ``ClientAppActor.options(**client_resources)``, so Ray's ``max_restarts`` placed next to
  ``num_cpus`` makes Ray restart a worker process that died. Without it a dead worker stays in
  Flower's pool and every later client sent to it fails (issue 15: 3 of 4 clients missing after
  one kill).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fedls.errors import ResourceError

if TYPE_CHECKING:
    from flwr.app.typing import ConfigRecordValues
    from flwr.server.superlink.fleet.vce.backend.backend import BackendConfig

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RAY_ADDRESS"  # Ray's own variable; `ray.init()` reads it too
# A worker that dies is restarted without limit (each restart follows a real death, e.g. an
# OOM kill). Client calls are not retried: the call that was running, and one sent while Ray
# restarts the worker, fail and that client is missing from the round (marked degraded); a
# client that kills its worker every time cannot loop. With task retries those rounds would be
# complete, but Ray then also retries Flower's `terminate` call after the actor's intentional
# exit and prints a warning per actor at the end of every run, faults or not.
ACTOR_MAX_RESTARTS = -1
ACTOR_MAX_TASK_RETRIES = 0
CLUSTER_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Resources:
    device: str  # "cpu" or "cuda"
    client_cpus: float
    client_gpus: float
    total_cpus: int
    total_gpus: int
    ray_address: str | None = None  # None: Flower starts a local Ray instance
    max_restarts: int = ACTOR_MAX_RESTARTS
    max_task_retries: int = ACTOR_MAX_TASK_RETRIES

    @property
    def parallel_clients(self) -> int:
        by_cpu = int(self.total_cpus // self.client_cpus)
        if self.client_gpus > 0:
            return max(1, min(by_cpu, int(self.total_gpus // self.client_gpus)))
        return max(1, by_cpu)

    def backend_config(self) -> BackendConfig:
        """Flower's ``backend_config`` for ``run_simulation`` (see the module docstring)."""
        init_args: dict[str, ConfigRecordValues] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if self.ray_address is None:
            init_args.update(num_cpus=self.total_cpus, num_gpus=self.total_gpus)
        else:
            init_args["address"] = self.ray_address
        return {
            "client_resources": {
                "num_cpus": self.client_cpus,
                "num_gpus": self.client_gpus,
                "max_restarts": self.max_restarts,
                "max_task_retries": self.max_task_retries,
            },
            "init_args": init_args,
        }


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ray_address_from(option: str | None) -> str | None:
    """The cluster to run on: the option, else Ray's ``RAY_ADDRESS`` variable, else none (local)."""
    address = option if option is not None else os.environ.get(RAY_ADDRESS_ENV)
    address = (address or "").strip()
    return address or None


def _probe(address: str) -> None:
    """Fail in seconds on an unreachable ``host:port`` (``ray.init`` retries for about a minute)."""
    if address == "auto" or "://" in address:
        return  # Ray resolves these itself (local session file, Ray Client)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ResourceError(f"Ray address {address!r} must look like HOST:PORT (e.g. 127.0.0.1:6379), 'auto' or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CLUSTER_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ResourceError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); "
            "start one with `ray start --head` or fix --ray-address/RAY_ADDRESS"
        ) from None


def cluster_totals(address: str) -> tuple[int, int]:
    """CPUs and GPUs of an existing Ray cluster; connects briefly and disconnects (the simulation
    connects again through Flower's backend, with Flower's own runtime environment)."""
    import ray

    _probe(address)
    # Same setting as the simulation itself (local_ray.quiet_flower): keeps Ray's FutureWarning
    # about accelerator variables off the terminal and out of the clients' environment.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        totals = ray.cluster_resources()
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ResourceError(
            f"cannot connect to the Ray cluster at {address}: {exc}; check `ray status --address {address}`"
        ) from None
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return int(totals.get("CPU", 0)), int(totals.get("GPU", 0))


def resolve_resources(
    device: str,
    clients: int,
    client_cpus: float | None,
    client_gpus: float | None,
    ray_address: str | None = None,
) -> Resources:
    """Pick the device and per-client resources; raise :class:`ResourceError` if they cannot fit.

    With a Ray cluster (``ray_address`` or ``RAY_ADDRESS``) the client resources are checked
    against the cluster's totals; the device is still the one of this machine, where the
    server evaluates and attacks.
    """
    cuda = torch.cuda.is_available()
    if device.startswith("cuda") and not cuda:
        raise ResourceError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    resolved = "cuda" if device == "auto" and cuda else ("cpu" if device == "auto" else device.split(":")[0])
    address = ray_address_from(ray_address)
    if address is None:
        total_cpus = available_cpus()
        total_gpus = torch.cuda.device_count() if resolved == "cuda" else 0
    else:
        total_cpus, cluster_gpus = cluster_totals(address)
        total_gpus = cluster_gpus if resolved == "cuda" else 0
        log.info("Ray cluster at %s: %d CPU(s), %d GPU(s)", address, total_cpus, cluster_gpus)
    where = "this machine's" if address is None else f"the Ray cluster's ({address})"
    cpus = 1.0 if client_cpus is None else float(client_cpus)
    if cpus <= 0 or cpus > total_cpus:
        raise ResourceError(f"--client-cpus {cpus:g} does not fit {where} {total_cpus} CPU(s); use a value in (0, {total_cpus}]")
    if client_gpus is None:
        # Share the GPU(s) among the clients that run at once (fractional GPUs).
        parallel = max(1, min(clients, int(total_cpus // cpus)))
        gpus = total_gpus / parallel if total_gpus else 0.0
    else:
        gpus = float(client_gpus)
    if gpus < 0 or gpus > total_gpus:
        hint = "use --device cuda on a GPU machine" if total_gpus == 0 else f"use a value <= {total_gpus}"
        raise ResourceError(f"--client-gpus {gpus:g} does not fit {where} {total_gpus} GPU(s); {hint}")
    return Resources(resolved, cpus, gpus, total_cpus, total_gpus, ray_address=address)
