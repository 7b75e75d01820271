"""The same ServerApp/ClientApp for `flwr run .` (see ``[tool.flwr.app]`` in pyproject.toml).

Under `flwr run` the ServerApp runs in its own process, so everything it produces goes to
the run directory on disk. ``[tool.flwr.app.config]`` keys are RunConfig fields with
dashes; ``num-server-rounds`` is Flower's name for ``rounds``.
"""

from __future__ import annotations

import time
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedls.attacks import build_observers
from fedls.config import RunConfig
from fedls.federation.client import make_client_app
from fedls.federation.resources import resolve_resources
from fedls.federation.server import CuriousServer
from fedls.federation.simulation import summarise
from fedls.run_dir import RunDirectory


def config_from_run_config(run_config: dict[str, Any]) -> RunConfig:
    values = dict(run_config)
    if "num-server-rounds" in values:
        values["rounds"] = values.pop("num-server-rounds")
    return RunConfig.from_dict(values, source="[tool.flwr.app.config]").validate()


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    config = config_from_run_config(dict(context.run_config))
    resources = resolve_resources(config.device, config.clients, config.client_cpus, config.client_gpus)
    run = RunDirectory.create(config)
    server = CuriousServer(config, run, resources, observer_factory=build_observers)
    status = "failed"
    started = time.perf_counter()
    try:
        server.main(grid, context)
        if server.outcome.final_state is not None:
            run.save_model(server.outcome.final_state)
            status = "complete"
    finally:
        run.write_summary(summarise(config, server, status, time.perf_counter() - started, resources))


client_app = make_client_app()
