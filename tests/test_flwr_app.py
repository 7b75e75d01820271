"""The `flwr run .` entry point reads pyproject's [tool.flwr.app.config] into a RunConfig."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedls.errors import ConfigError
from fedls.federation.flwr_app import client_app, config_from_run_config, server_app


def test_pyproject_app_config_is_a_valid_run_config() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    app = pyproject["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "fedls.federation.flwr_app:server_app",
        "clientapp": "fedls.federation.flwr_app:client_app",
    }
    config = config_from_run_config(app["config"])
    assert config.rounds == app["config"]["num-server-rounds"] and config.alpha == app["config"]["alpha"]
    assert server_app is not None and client_app is not None


def test_bad_run_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_run_config({"num-server-rounds": 2, "alpah": 0.1})
    with pytest.raises(ConfigError, match="alpha"):
        config_from_run_config({"alpha": 3.0})
