"""The same ServerApp/ClientApp for `flwr run .` (see ``[tool.flwr.app]`` in pyproject.toml).

Under `flwr run` the ServerApp runs in its own process (on the SuperLink's machine), so
everything it produces goes to the run directory on disk and its messages go to Flower's
log stream (``flwr run --stream``, ``flwr log``).

Run config (``--run-config``): Flower accepts only keys declared in ``[tool.flwr.app.config]``,
so every fedls option is declared there, with ``""`` meaning "not set":

* each scalar RunConfig field under its dashed name (``lr``, ``defense``, ``mia-every``…);
  ``num-server-rounds`` is Flower's name for ``rounds``;
* each option table as one string of ``KEY=VALUE`` pairs, the CLI's ``--defense-option``
  syntax: ``defense-options="beta=0.01"``, ``gradient-attack="probe=fedsgd recon-steps=10"``;
* ``config-file``: a fedls TOML, the file ``fedls simulate --config`` reads. Precedence as in
  the CLI: fedls defaults < config file < keys set in the run config.

The ServerApp validates all of it before anything is written, waits briefly for the
federation's SuperNodes and refuses to start with fewer than ``clients`` (Flower's own
strategy would wait for them forever).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.app.exception import AppExitException
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.exit import ExitCode

from fedls.config import RunConfig, parse_assignment, read_toml
from fedls.errors import ConfigError, FedlsError
from fedls.federation.client import make_client_app
from fedls.federation.simulation import prepare, summarise
from fedls.run_dir import RunDirectory

log = logging.getLogger(__name__)

ROUNDS_KEY = "num-server-rounds"
CONFIG_FILE_KEY = "config-file"
NODE_WAIT_KEY = "node-wait"  # seconds the ServerApp waits for `clients` SuperNodes to connect
DEFAULT_NODE_WAIT_S = 20.0
NOT_FOR_THE_APP = {"ray_address"}  # a `fedls simulate` option: a Flower federation has its own backend
APP_KEYS = (ROUNDS_KEY, CONFIG_FILE_KEY, NODE_WAIT_KEY)


class FedlsAppExit(AppExitException):
    """Bad input or a federation that cannot run this config: Flower marks the run failed
    ("ServerApp failed with exception: <the one line>") and its process exits non-zero."""

    exit_code = ExitCode.SERVERAPP_EXCEPTION


def _field_defaults() -> dict[str, Any]:
    """RunConfig field names and their defaults (pydantic model)."""
    return {name: info.get_default(call_default_factory=True) for name, info in RunConfig.model_fields.items()}


def table_fields() -> list[str]:
    """Option tables (defense options, attack sections, central DP): one KEY=VALUE string each."""
    return sorted(name for name, default in _field_defaults().items() if isinstance(default, dict))


def declared_keys() -> set[str]:
    """Every key ``[tool.flwr.app.config]`` must declare so that every fedls option is settable."""
    fields = {name.replace("_", "-") for name in _field_defaults() if name not in NOT_FOR_THE_APP}
    return (fields - {"rounds"}) | set(APP_KEYS)


def _parse_table(key: str, text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ConfigError(f"run config {key} must be a string of KEY=VALUE pairs, e.g. {key}=\"a=1 b=2\"")
    return dict(parse_assignment(pair, f'{key}="key=value"') for pair in text.split())


def _resolve_config_file(value: str) -> Path:
    """Absolute paths as given; relative ones against the app's own folder (the FAB that
    `flwr run` shipped to the SuperLink holds the project's .toml files), then the cwd."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    app_root = Path(__file__).resolve().parents[2]
    return app_root / path if (app_root / path).exists() else path.resolve()


def run_root(value: str) -> str:
    """The run directory's parent as an absolute path, decided by what the user submitted.

    A relative path would land wherever the SuperLink process happens to run (issue 15);
    the default ``""`` means ``~/fedls-runs`` of the user running the ServerApp.
    """
    if not value:
        return str(Path.home() / "fedls-runs")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"run-dir {value!r} is relative, but the ServerApp runs in the SuperLink's directory; "
            "pass an absolute path, e.g. --run-config \"run-dir='$PWD/runs'\""
        )
    return str(path)


def split_run_config(run_config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Flower's flat run config → (RunConfig values, node wait). Unset ("") keys are dropped."""
    values = {key: value for key, value in run_config.items() if value != ""}
    node_wait = float(values.pop(NODE_WAIT_KEY, DEFAULT_NODE_WAIT_S))
    base: dict[str, Any] = {}
    if CONFIG_FILE_KEY in values:
        data = read_toml(_resolve_config_file(str(values.pop(CONFIG_FILE_KEY))), "config-file")
        base = dict(data.get("run", data))
    if ROUNDS_KEY in values:
        values["rounds"] = values.pop(ROUNDS_KEY)
    tables = {name.replace("_", "-") for name in table_fields()}
    merged = {key.replace("_", "-"): value for key, value in base.items()}
    for key, value in values.items():
        if key in tables:
            # like the CLI: options given here add to (and override) the file's table
            merged[key] = {**dict(merged.get(key, {})), **_parse_table(key, value)}
        else:
            merged[key] = value
    merged["run-dir"] = run_root(str(merged.get("run-dir", "")))
    return merged, node_wait


def config_from_run_config(run_config: dict[str, Any]) -> RunConfig:
    values, _ = split_run_config(run_config)
    return RunConfig.from_dict(values, source="run config").check_registries()


def wait_for_nodes(grid: Grid, wanted: int, timeout: float, poll: float = 1.0) -> int:
    """Wait up to ``timeout`` s for ``wanted`` SuperNodes; raise a one-line error naming the fix."""
    deadline = time.monotonic() + timeout
    while True:
        connected = len(list(grid.get_node_ids()))
        if connected >= wanted:
            if connected > wanted:
                log.warning("%d SuperNodes connected but clients=%d; every connected node is sampled", connected, wanted)
            return connected
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"clients={wanted} but only {connected} SuperNode(s) connected after {timeout:g} s; "
                f"run with --run-config 'clients={connected}', or give the federation {wanted} SuperNodes "
                f"(local simulation: flwr federation simulation-config @none/default local --num-supernodes {wanted}; "
                f"deployment: start {wanted} flower-supernode processes)"
            )
        time.sleep(poll)


class _OneLineErrors(logging.Filter):
    """Flower logs a ServerApp exception with its traceback; for fedls' own bad-input errors the
    one line (already logged by fedls) is the whole story, so the traceback is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FedlsAppExit):
            record.exc_info, record.exc_text = None, None
        return True


class _FedlsAppHandler(logging.StreamHandler):
    """The handler :func:`_show_fedls_logs` adds, marked by ``_fedls_app``."""

    _fedls_app = True


def _show_fedls_logs() -> None:
    """The ServerApp process has no logging set up; Flower mirrors its stderr into the run's log stream."""
    logger = logging.getLogger("fedls")
    if not any(getattr(h, "_fedls_app", False) for h in logger.handlers):
        handler = _FedlsAppHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fedls %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    flower = logging.getLogger("flwr")
    if not any(isinstance(f, _OneLineErrors) for f in flower.filters):
        flower.addFilter(_OneLineErrors())


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    from fedls.federation.observers import build_observers
    from fedls.federation.server import CuriousServer

    _show_fedls_logs()
    try:
        values, node_wait = split_run_config(dict(context.run_config))
        config = RunConfig.from_dict(values, source="run config")
        prepared = prepare(config)  # the same checks as `fedls simulate`, before anything is written
        wait_for_nodes(grid, config.clients, node_wait)
        run = RunDirectory.create(config)
    except FedlsError as exc:
        log.error("%s", exc)
        raise FedlsAppExit(str(exc)) from None
    server = CuriousServer(config, run, prepared.resources, observer_factory=build_observers)
    status = "failed"
    started = time.perf_counter()
    try:
        server.main(grid, context)
        if server.outcome.final_state is not None:
            run.save_model(server.outcome.final_state)
            status = "complete"
    except FedlsError as exc:
        log.error("%s", exc)
        raise FedlsAppExit(str(exc)) from None
    finally:
        summary = summarise(config, server, status, time.perf_counter() - started, prepared.resources)
        run.write_summary(summary)
        log.info("run %s: %s, %d of %d rounds", run.path.name, summary["status"], summary["rounds_completed"], config.rounds)
        log.info("run directory: %s", run.path)
        log.info("open it with:  tensorboard --logdir %s", run.path.parent)


client_app = make_client_app()
