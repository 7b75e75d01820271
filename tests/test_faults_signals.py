"""`fedls simulate` stopped by signals or a full disk, and what it exposes while it runs.

Each real run is a child ``fedls simulate`` on the bundled digits with its own short
``TMPDIR``: Ray's temporary folder (``fedls-ray-*``) is made there, and every process of the
run (the driver, Ray's GCS, raylet, agents and workers) carries ``TMPDIR=<that folder>`` in its
environment or holds a log file open under it, so the tests find exactly the processes they
started, never those of another run on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import processes_with_env

from fedls.run_dir import OutputError, RunDirectory

FEDLS = Path(sys.executable).with_name("fedls")
TINY = ["--clients", "2", "--attacks", "none", "--local-epochs", "1", "--seed", "1"]


class Run:
    """A child ``fedls simulate`` in its own session (a signal to the test's process group
    does not reach it) with a private ``TMPDIR``."""

    def __init__(self, run_dir: Path, name: str, rounds: int, env: dict[str, str] | None = None) -> None:
        # Ray's socket paths are length-limited: a short folder, not pytest's deep tmp_path.
        self.tmp = Path(tempfile.mkdtemp(prefix="fsig-"))
        self.path = run_dir / name
        command = [str(FEDLS), "simulate", *TINY, "--rounds", str(rounds), "--run-dir", str(run_dir), "--name", name]
        environment = {**os.environ, **(env or {}), "TMPDIR": str(self.tmp)}
        environment.pop("RAY_ADDRESS", None)
        self.process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.stdout = self.stderr = ""

    @property
    def marker(self) -> str:
        return f"TMPDIR={self.tmp}"

    def processes(self) -> list[int]:
        """By environment, and by open files for Ray's agents, whose process titles overwrite
        part of the environment that /proc shows."""
        return sorted(set(processes_with_env(self.marker)) | set(processes_with_files_under(self.tmp)))

    def wait_for_rows(self, rows: int, timeout: float = 120.0) -> None:
        """Until metrics.jsonl holds ``rows`` rows (round 0 is the first)."""
        deadline = time.monotonic() + timeout
        file = self.path / "metrics.jsonl"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.finish(0)
                pytest.fail(f"the run ended early with {self.process.returncode}: {self.stderr[-2000:]}")
            if file.exists() and len(file.read_text().splitlines()) >= rows:
                return
            time.sleep(0.2)
        pytest.fail(f"no {rows} rows in {timeout:.0f} s")

    def finish(self, timeout: float = 60.0) -> int:
        self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode

    def leftovers(self, grace: float = 2.0) -> list[int]:
        """Processes of this run still alive ``grace`` seconds after the driver ended."""
        deadline = time.monotonic() + grace
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def close(self) -> None:
        """Never leave anything behind, whatever a test asserted."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        shutil.rmtree(self.tmp, ignore_errors=True)


def processes_with_files_under(folder: Path) -> list[int]:
    prefix = f"{folder}/"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def listening(pids: list[int]) -> list[str]:
    """``ss -ltnp`` lines of the TCP ports these processes listen on."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30, check=True).stdout
    return [line for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def is_client_worker(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ClientAppActor")
    except OSError:
        return False


# -- SIGTERM mid-run -----------------------------------------------------------------------------
@dataclass
class Stopped:
    run: Run
    returncode: int
    seconds: float  # from SIGTERM to the driver's exit
    sockets: list[str] = field(default_factory=list)
    worker_env: list[dict[str, str]] = field(default_factory=list)
    leftovers: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stopped]:
    """One run of 30 rounds, looked at once round 1 has finished, then sent SIGTERM (to the
    driver alone, as ``kill PID``, docker or systemd do: Ray's processes are left to fedls)."""
    run = Run(tmp_path_factory.mktemp("runs"), "term", rounds=30)
    try:
        run.wait_for_rows(2)
        pids = run.processes()
        sockets = listening(pids) if shutil.which("ss") else []
        worker_env = [environ(pid) for pid in pids if is_client_worker(pid)]
        sent = time.monotonic()
        run.process.send_signal(signal.SIGTERM)
        returncode = run.finish()
        seconds = time.monotonic() - sent
        yield Stopped(run, returncode, seconds, sockets, worker_env, run.leftovers())
    finally:
        run.close()


def test_sigterm_leaves_an_interrupted_summary_and_the_last_model(sigterm_run: Stopped) -> None:
    run = sigterm_run.run
    assert sigterm_run.returncode == 128 + signal.SIGTERM, run.stderr
    assert sigterm_run.seconds < 20, "SIGTERM must not wait for the remaining rounds"
    assert "Traceback" not in run.stderr and "SIGTERM: stopped after round" in run.stderr, run.stderr
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 1 <= summary["rounds_completed"] < 30
    rows = RunDirectory(run.path).metrics()
    assert [r["round"] for r in rows][: summary["rounds_completed"] + 1] == list(range(summary["rounds_completed"] + 1))
    state = torch.load(run.path / "model.pt", weights_only=True)  # the last finished round's global model
    assert state and all(torch.isfinite(v).all() for v in state.values())
    assert not list(run.path.glob("*.tmp")) and not list(run.path.glob(".*.tmp"))


def test_sigterm_leaves_no_ray_processes_or_temp_folder(sigterm_run: Stopped) -> None:
    assert sigterm_run.leftovers == [], "Ray processes of the run outlived it"
    assert not list(sigterm_run.run.tmp.glob("fedls-ray-*"))


def test_ray_listens_on_loopback_only(sigterm_run: Stopped) -> None:
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed: cannot list listening sockets")
    names = " ".join(sigterm_run.sockets)
    assert "gcs_server" in names and "raylet" in names, sigterm_run.sockets
    for line in sigterm_run.sockets:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")), line


def test_flower_telemetry_is_off_in_the_run(sigterm_run: Stopped) -> None:
    assert sigterm_run.worker_env, "no ClientAppActor worker found"
    assert all(env.get("FLWR_TELEMETRY_ENABLED") == "0" for env in sigterm_run.worker_env)


def test_telemetry_stays_as_the_user_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore import telemetry

    from fedls.federation.local_ray import flower_telemetry_off

    monkeypatch.setattr(telemetry, "FLWR_TELEMETRY_ENABLED", telemetry.FLWR_TELEMETRY_ENABLED)
    monkeypatch.delenv("FLWR_TELEMETRY_ENABLED", raising=False)
    flower_telemetry_off()
    assert os.environ["FLWR_TELEMETRY_ENABLED"] == "0" and telemetry.FLWR_TELEMETRY_ENABLED == "0"
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "1")  # the user opted in
    flower_telemetry_off()
    assert telemetry.FLWR_TELEMETRY_ENABLED == "1"


# -- a second Ctrl-C -----------------------------------------------------------------------------
def test_second_ctrl_c_quits_at_once_with_a_summary(tmp_path: Path) -> None:
    """Ctrl-C twice, to the whole process group as a terminal sends it (Ray's processes block
    SIGINT); the second one must not wait for the round."""
    run = Run(tmp_path, "twice", rounds=30)
    try:
        run.wait_for_rows(2)
        os.killpg(run.process.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(run.process.pid, signal.SIGINT)
        assert run.finish() == 128 + signal.SIGINT, run.stderr
        summary = json.loads((run.path / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["rounds_completed"] < 30
        assert "Traceback" not in run.stderr
        assert (run.path / "model.pt").is_file()  # the copy taken when the last round finished
        assert run.leftovers() == [] and not list(run.tmp.glob("fedls-ray-*"))
    finally:
        run.close()


def test_a_finished_run_leaves_no_ray_processes_or_temp_folder(tmp_path: Path) -> None:
    run = Run(tmp_path, "done", rounds=1)
    try:
        assert run.finish(timeout=120) == 0, run.stderr
        assert run.leftovers() == [] and not list(run.tmp.glob("fedls-ray-*"))
    finally:
        run.close()


# -- a full disk ---------------------------------------------------------------------------------
@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 300 KiB tmpfs: smaller than the digits model (about 440 KiB)."""
    folder = Path(tempfile.mkdtemp(prefix="fsig-disk-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)
        folder.rmdir()


def fill(disk: Path, leave_kib: int) -> None:
    """Take all but about ``leave_kib`` KiB of the disk."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave_kib * 1024))


def test_full_disk_is_one_line_and_keeps_finished_rounds(small_disk: Path) -> None:
    run = Run(small_disk, "full", rounds=3)
    try:
        code = run.finish(timeout=120)
        left, ray_tmp = run.leftovers(), list(run.tmp.glob("fedls-ray-*"))
    finally:
        run.close()
    assert left == [] and ray_tmp == []  # the error path cleans up too
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, run.stderr
    assert "no space left on device writing" in lines[0] and "model.pt" in lines[0] and "free space and rerun" in lines[0]
    assert "Traceback" not in run.stderr
    assert not [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")]
    assert [r["round"] for r in RunDirectory(run.path).metrics()] == [0, 1, 2, 3]  # every finished round
    assert json.loads((run.path / "summary.json").read_text())["status"] == "failed"
    assert not (run.path / "model.pt").exists()


def test_a_metrics_row_is_written_whole_or_not_at_all(small_disk: Path) -> None:
    run = RunDirectory(small_disk)
    run.append_metrics({"round": 0, "global/accuracy": 0.5})
    before = (small_disk / "metrics.jsonl").read_bytes()
    fill(small_disk, leave_kib=4)
    with pytest.raises(OutputError, match=r"^no space left on device writing .*metrics\.jsonl; free space and rerun$"):
        run.append_metrics({"round": 1, "blob": "x" * 64 * 1024})
    assert (small_disk / "metrics.jsonl").read_bytes() == before
    assert [r["round"] for r in run.metrics()] == [0]


def test_summary_and_model_writes_leave_no_temporary_file(small_disk: Path) -> None:
    run = RunDirectory(small_disk)
    run.write_summary({"status": "running"})
    fill(small_disk, leave_kib=4)
    with pytest.raises(OutputError, match="no space left on device writing .*model.pt"):
        run.save_model({"w": torch.zeros(64 * 1024)})
    with pytest.raises(OutputError, match="no space left on device writing .*summary.json"):
        run.write_summary({"status": "complete", "blob": "x" * 64 * 1024})
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "summary.json"]
    assert run.summary() == {"status": "running"}  # the old file, whole


def test_tensorboard_on_a_full_disk_is_one_error_without_a_thread_traceback(
    small_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fedls.federation.tracking import RoundTracker

    run = RunDirectory(small_disk)
    tracker = RoundTracker(run)
    fill(small_disk, leave_kib=4)
    with pytest.raises(OutputError, match="no space left on device writing .*events.out.tfevents"):
        for server_round in range(5):
            tracker.start_round(server_round)
            figure = plt.figure(figsize=(2, 2))
            figure.figimage(np.random.default_rng(server_round).random((200, 200)))  # noise: a PNG of ~100 KiB
            tracker.figure("noise", figure)  # TensorBoard only: no metrics.jsonl row grows with it
            tracker.flush_round()
    tracker.finish("failed")  # nothing more is written, nothing raised
    tracker.close()
    assert "Traceback" not in capfd.readouterr().err
