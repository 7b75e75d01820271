"""`fedls simulate` on an existing Ray cluster: a local head on loopback, started and stopped here.

The head runs as ``ray start --head --block`` in its own process group, so the test stops
exactly the processes it started (by that group id) instead of `ray stop`, which would stop
every Ray instance of this user on the machine, other sessions' included.
"""

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
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedls.config import RunConfig
from fedls.errors import ResourceError
from fedls.federation.resources import resolve_resources
from fedls.federation.simulation import prepare

RAY = Path(sys.executable).with_name("ray")
FEDLS = Path(sys.executable).with_name("fedls")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    """A single-node Ray cluster on loopback with its own ports and temp dir."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's socket paths are length-limited: a short temp dir, not pytest's deep tmp_path.
        self.temp_dir = tempfile.mkdtemp(prefix="fedls-rh-")
        command = [
            str(RAY), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
            "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_dir}", "--include-dashboard=false",
            "--disable-usage-stats", f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--min-worker-port={free_port()}",
            "--max-worker-port=0",
        ]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        self.log = Path(self.temp_dir) / "head.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                out = subprocess.run([str(RAY), "status", f"--address={self.address}"],
                                     capture_output=True, text=True, timeout=30)
                if out.returncode == 0 and "CPU" in out.stdout:
                    return
            except (OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(1.0)
        raise RuntimeError(f"Ray head not ready in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the group `ray start --block` leads (it stops its GCS, raylet and workers), then SIGKILL."""
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            self.process.poll()
            if not _group_alive(self.process.pid):
                break
            os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.process.poll()  # reap `ray start` at once: a zombie leader keeps its group alive
                if not _group_alive(self.process.pid):
                    break
                time.sleep(0.5)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """PIDs of any process still mentioning this head's temp dir (workers outside the group)."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if self.temp_dir.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
        return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    head = RayHead(num_cpus=2)
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
        assert not _group_alive(head.process.pid) and not head.leftovers(), "Ray head processes left running"


def _check_run(path: Path, head: RayHead) -> None:
    summary = json.loads((path / "summary.json").read_text())
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "complete", summary
    assert [r["round"] for r in records] == [0, 1, 2]
    assert all(r["clients/num-clients"] == 2 and r["clients/missing"] == 0 for r in records[1:])
    assert records[-1]["global/accuracy"] > records[0]["global/accuracy"]
    # The clients ran on the cluster: its raylet started Flower's ClientAppActor workers (Ray
    # writes the actor name into the worker's log), and the head still serves afterwards.
    logs = Path(head.temp_dir).glob("session_2*/logs/worker-*")
    assert any("ClientAppActor" in log.read_text(errors="replace") for log in logs)
    out = subprocess.run([str(RAY), "status", f"--address={head.address}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_cli_ray_address_runs_on_the_cluster(ray_head: RayHead, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = subprocess.run(
        [str(FEDLS), "simulate", "--ray-address", ray_head.address, "--clients", "2", "--rounds", "2", "--local-epochs", "1",
         "--attacks", "none", "--run-dir", str(tmp_path), "--name", "cli", "--seed", "3"],
        capture_output=True, text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    _check_run(tmp_path / "cli", ray_head)
    print(f"fedls simulate --ray-address, 2 clients x 2 rounds: {time.perf_counter() - started:.1f} s")


def test_ray_address_variable_selects_the_cluster(ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's documented variable chooses the cluster as --ray-address does (the run on the
    cluster itself is the test above): what simulate() prepares joins it, sized by it."""
    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    prepared = prepare(RunConfig(clients=2, rounds=2, local_epochs=1, attacks="none", run_dir=str(tmp_path), name="env"))
    resources = prepared.resources
    assert resources.ray_address == ray_head.address and resources.total_cpus == 2
    assert resources.backend_config()["init_args"]["address"] == ray_head.address
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert prepare(RunConfig(clients=2, run_dir=str(tmp_path), name="local")).resources.ray_address is None


def test_client_resources_are_checked_against_the_cluster(ray_head: RayHead) -> None:
    resources = resolve_resources("cpu", 2, 1.0, None, ray_address=ray_head.address)
    assert resources.total_cpus == 2 and resources.ray_address == ray_head.address
    init_args = resources.backend_config()["init_args"]
    assert init_args["address"] == ray_head.address and "num_cpus" not in init_args  # ray.init refuses both together
    with pytest.raises(ResourceError, match="Ray cluster"):
        resolve_resources("cpu", 2, 3.0, None, ray_address=ray_head.address)


def test_unreachable_cluster_is_one_line_and_fast() -> None:
    started = time.monotonic()
    with pytest.raises(ResourceError, match="no Ray cluster answers") as info:
        resolve_resources("cpu", 2, None, None, ray_address=f"127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10 and "\n" not in str(info.value)
    with pytest.raises(ResourceError, match="HOST:PORT"):
        resolve_resources("cpu", 2, None, None, ray_address="not-an-address")
