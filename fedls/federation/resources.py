"""Devices and Flower/Ray client resources, validated against the machine before Ray starts.

Ray's actor pool stays empty when a client asks for more than the machine has, and the
ServerApp would then wait for its round timeout (flower issue 4476); fedls refuses such a
request up front instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fedls.errors import ResourceError


@dataclass(frozen=True)
class Resources:
    device: str  # "cpu" or "cuda"
    client_cpus: float
    client_gpus: float
    total_cpus: int
    total_gpus: int

    @property
    def parallel_clients(self) -> int:
        by_cpu = int(self.total_cpus // self.client_cpus)
        if self.client_gpus > 0:
            return max(1, min(by_cpu, int(self.total_gpus // self.client_gpus)))
        return max(1, by_cpu)

    def backend_config(self) -> dict[str, object]:
        return {
            "client_resources": {"num_cpus": self.client_cpus, "num_gpus": self.client_gpus},
            "init_args": {
                "num_cpus": self.total_cpus,
                "num_gpus": self.total_gpus,
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": "ERROR",
            },
        }


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_resources(device: str, clients: int, client_cpus: float | None, client_gpus: float | None) -> Resources:
    """Pick the device and per-client resources; raise :class:`ResourceError` if they cannot fit."""
    cuda = torch.cuda.is_available()
    if device.startswith("cuda") and not cuda:
        raise ResourceError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    resolved = "cuda" if device == "auto" and cuda else ("cpu" if device == "auto" else device.split(":")[0])
    total_cpus = available_cpus()
    total_gpus = torch.cuda.device_count() if resolved == "cuda" else 0
    cpus = 1.0 if client_cpus is None else float(client_cpus)
    if cpus <= 0 or cpus > total_cpus:
        raise ResourceError(f"--client-cpus {cpus:g} does not fit this machine's {total_cpus} CPU(s); use a value in (0, {total_cpus}]")
    if client_gpus is None:
        # Share the GPU(s) among the clients that run at once (fractional GPUs).
        parallel = max(1, min(clients, int(total_cpus // cpus)))
        gpus = total_gpus / parallel if total_gpus else 0.0
    else:
        gpus = float(client_gpus)
    if gpus < 0 or gpus > total_gpus:
        hint = "use --device cuda on a GPU machine" if total_gpus == 0 else f"use a value <= {total_gpus}"
        raise ResourceError(f"--client-gpus {gpus:g} does not fit this machine's {total_gpus} GPU(s); {hint}")
    return Resources(resolved, cpus, gpus, total_cpus, total_gpus)
