"""The `flwr run .` entry point: every fedls option through Flower's run config, checked up front."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
from conftest import processes_with_env

from fedls.errors import ConfigError
from fedls.federation.flwr_app import (
    client_app,
    config_from_run_config,
    declared_keys,
    server_app,
    split_run_config,
    wait_for_nodes,
)

ROOT = Path(__file__).parents[1]


def app_section() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]


def test_pyproject_declares_every_fedls_option() -> None:
    app = app_section()
    assert app["components"] == {
        "serverapp": "fedls.federation.flwr_app:server_app",
        "clientapp": "fedls.federation.flwr_app:client_app",
    }
    # Flower refuses undeclared --run-config keys: a RunConfig field missing here is unreachable.
    assert set(app["config"]) == declared_keys()
    assert all(value == "" for value in app["config"].values())  # "" = not set: fedls defaults apply
    assert server_app is not None and client_app is not None


def test_declared_defaults_are_fedls_defaults(tmp_path: Path) -> None:
    from fedls.config import RunConfig

    config = config_from_run_config({**app_section()["config"], "run-dir": str(tmp_path)})
    expected = RunConfig(run_dir=str(tmp_path))
    assert config.to_dict() == expected.to_dict()


def test_flat_keys_and_option_tables(tmp_path: Path) -> None:
    config = config_from_run_config({
        "num-server-rounds": 3, "clients": 4, "lr": 0.1, "alpha": -0.05, "defense": "bido",
        "defense-options": "lambda-x=0.1 sigma=2.0", "attacks": "gradient",
        "gradient-attack": "threat=malicious-fedsgd recon-steps=5", "run-dir": str(tmp_path), "seed": "",
    })
    assert (config.rounds, config.clients, config.lr, config.alpha) == (3, 4, 0.1, -0.05)
    assert config.defense_options == {"lambda-x": 0.1, "sigma": 2.0} or config.defense_options == {"lambda_x": 0.1, "sigma": 2.0}
    assert config.gradient_attack_on() and not config.model_attack_on()
    assert dict(config.gradient_attack) in (
        {"threat": "malicious-fedsgd", "recon-steps": 5}, {"threat": "malicious-fedsgd", "recon_steps": 5})
    assert config.seed == 0  # "" = the fedls default


def test_config_file_then_run_config_keys(tmp_path: Path) -> None:
    file = tmp_path / "exp.toml"
    file.write_text('rounds = 7\nlr = 0.2\ndefense = "bido"\n[defense-options]\nlambda-x = 0.2\nsigma = 3.0\n')
    config = config_from_run_config(
        {"config-file": str(file), "lr": 0.3, "defense-options": "sigma=4.0", "run-dir": str(tmp_path)})
    assert config.rounds == 7 and config.lr == 0.3  # the run config overrides the file, key by key
    options = {k.replace("-", "_"): v for k, v in config.defense_options.items()}
    assert options == {"lambda_x": 0.2, "sigma": 4.0}


def test_relative_config_file_is_found_inside_the_app() -> None:
    experiment = next((ROOT / "experiments").glob("*.toml"))
    values, _ = split_run_config({"config-file": f"experiments/{experiment.name}", "run-dir": "/tmp/x"})
    assert values["run-dir"] == "/tmp/x"


def test_run_directory_is_absolute(tmp_path: Path) -> None:
    values, wait = split_run_config({"run-dir": ""})
    assert Path(values["run-dir"]).is_absolute() and wait == 20.0
    with pytest.raises(ConfigError, match="absolute path") as info:
        split_run_config({"run-dir": "runs"})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"alpha": 2.0}, "alpha"),
        ({"alpah": 0.1}, "alpah"),
        ({"lr": -1}, "lr"),
        ({"defense-options": "beta"}, "KEY=VALUE"),
        ({"config-file": "/nonexistent/x.toml"}, "does not exist"),
    ],
)
def test_bad_values_are_one_line_config_errors(values: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        config_from_run_config({"run-dir": str(tmp_path), **values})
    assert "\n" not in str(info.value)


class FakeGrid:
    def __init__(self, nodes: int) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))


def test_too_few_supernodes_fail_promptly_naming_the_fix() -> None:
    assert wait_for_nodes(FakeGrid(3), 3, timeout=0) == 3
    with pytest.raises(ConfigError) as info:
        wait_for_nodes(FakeGrid(2), 10, timeout=0.0, poll=0.01)
    message = str(info.value)
    assert "\n" not in message and "only 2 SuperNode(s)" in message
    assert "--num-supernodes 10" in message and "clients=2" in message


# -- `flwr run .` end to end, as the README says (Flower's managed local SuperLink) -----------


def _own_processes(flwr_home: Path) -> list[int]:
    return processes_with_env(f"FLWR_HOME={flwr_home}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flwr_run_local_simulation_as_in_the_readme() -> None:
    work = Path(tempfile.mkdtemp(prefix="fedls-flwr-"))
    home = work / "flwr-home"
    env = {
        **os.environ,
        "FLWR_HOME": str(home),  # Flower's state for this test only
        # the managed local SuperLink's ports (fixed by default: another session's would be reused)
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("RAY_ADDRESS", None)
    runs = work / "runs"
    try:
        configure = subprocess.run(
            ["flwr", "federation", "simulation-config", "@none/default", "local", "--num-supernodes", "2"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert configure.returncode == 0, configure.stdout + configure.stderr
        result = subprocess.run(
            ["flwr", "run", ".", "--run-config",
             f"num-server-rounds=1 clients=2 local-epochs=1 attacks='none' run-dir='{runs}'", "--stream"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
        )
        out = result.stdout + result.stderr
        assert "Traceback" not in out, out[-3000:]
        lines = [line for line in out.splitlines() if line.startswith("fedls INFO: run directory: ")]
        assert lines, out[-3000:]
        path = Path(lines[-1].removeprefix("fedls INFO: run directory: "))
        assert path.is_absolute() and path.parent == runs
        assert f"tensorboard --logdir {runs}" in out
        summary = json.loads((path / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["rounds_completed"] == 1
    finally:
        pids = _own_processes(home)  # the local SuperLink stays up after `flwr run`: stop ours
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _own_processes(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _own_processes(home):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
