"""A real multi-process federation (Flower's Deployment Engine) via scripts/federation_local.sh:
one SuperLink, N SuperNodes, the fedls app with an attack and a defense, every process stopped."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import processes_with_env

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "federation_local.sh"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A private folder instead of pytest's: the federation runs for minutes, and other pytest
    sessions of the same user rotate (delete) old folders under the shared basetemp."""
    path = Path(tempfile.mkdtemp(prefix="fedls-deploy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def processes_of(work: Path) -> list[int]:
    """Live processes started for this federation: they all inherit its FLWR_HOME."""
    return processes_with_env(f"FLWR_HOME={work}/flwr-home")


def run_script(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], Path]:
    work = tmp_path / "work"
    result = subprocess.run(
        [str(SCRIPT), "--run-dir", str(tmp_path / "runs"), "--work", str(work), *args],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
    )
    return result, work


def test_three_supernodes_two_rounds_with_attack_and_defense(tmp_path: Path) -> None:
    started = time.perf_counter()
    result, work = run_script(
        tmp_path, "--supernodes", "3", "--rounds", "2",
        "--run-config", 'attacks="gradient" gradient-attack="threat=malicious-fedsgd recon-steps=5" '
        'defense="bido" defense-options="lambda-x=0.05"',
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    path = Path(result.stdout.strip().splitlines()[-1])  # the LAST line is the run directory
    assert path.is_absolute() and path.parent == tmp_path / "runs"
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["rounds_completed"] == 2
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 1, 2]
    for record in records[1:]:
        assert record["clients/num-clients"] == 3 and record["clients/missing"] == 0
        assert record["clients/degraded"] == 0
        assert "leakage/gradient/probe_label_success" in record  # the curious server attacked
        assert "clients/bido_hsic_x" in record  # the clients trained with the defense
    # the three partitions together are the whole private split, the same every round
    assert records[1]["clients/num-examples"] == records[2]["clients/num-examples"] > 0
    assert "tensorboard --logdir" in result.stderr
    assert not processes_of(work), "federation processes left running"
    print(f"federation 3 SuperNodes x 2 rounds: {seconds:.1f} s")


def test_bad_value_fails_before_training_with_one_line(tmp_path: Path) -> None:
    result, work = run_script(tmp_path, "--supernodes", "1", "--rounds", "1", "--run-config", "alpha=2.0", timeout=300)
    assert result.returncode == 1
    log = (work / "run.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("fedls ERROR")]
    assert len(errors) == 1 and "alpha" in errors[0]
    assert "Traceback" not in log and "Exit Code: 201" in log  # Flower marks the run failed, exit code non-zero
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing written
    assert not processes_of(work)


def _pid_of(work: Path, name: str) -> tuple[int, list[str]]:
    for line in (work / "pids").read_text().splitlines():
        pid, label, *command = shlex.split(line)
        if label == name:
            return int(pid), command
    raise AssertionError(f"{name} not started")


def _wait_for_log(work: Path, line: str, script: subprocess.Popen[str], deadline: float) -> None:
    while line not in ((work / "run.log").read_text() if (work / "run.log").exists() else ""):
        assert time.monotonic() < deadline and script.poll() is None, f"{line} never appeared"
        time.sleep(0.5)


# Slow (a 4-round federation with a crash and a restart, about a minute on 2 cores). Lighter tests
# cover its parts: test_faults.py kills a client's worker mid-run and sees later rounds complete;
# test_strategy.py counts a node that never replied, and a lost node the SuperLink answers for, once.
@pytest.mark.slow
def test_killed_supernode_marks_the_round_and_a_restarted_one_rejoins(tmp_path: Path) -> None:
    """SIGKILL one SuperNode when round 2 starts: the rounds until it is back miss it (marked
    degraded: fewer replies than the planned clients); a SuperNode restarted with the same
    partition once round 3 has started joins the last round."""
    work = tmp_path / "work"
    script = subprocess.Popen(
        [str(SCRIPT), "--supernodes", "3", "--rounds", "4", "--run-dir", str(tmp_path / "runs"), "--work", str(work),
         "--run-config", 'attacks="none" round-timeout=45 min-client-share=0.5'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    replacement: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 400
        _wait_for_log(work, "[ROUND 2/4]", script, deadline)
        pid, command = _pid_of(work, "supernode-1")
        os.killpg(pid, signal.SIGKILL)  # a crash: no goodbye to the SuperLink
        # away for a round boundary at least, however fast the rounds are
        _wait_for_log(work, "[ROUND 3/4]", script, deadline)
        # the same SuperNode comes back (same partition), as a restarted machine would
        replacement = subprocess.Popen(
            [str(VENV_BIN / command[0]), *command[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
            # the SuperNode starts `flower-superexec` from PATH (and hangs if it is not found)
            env={**os.environ, "FLWR_HOME": str(work / "flwr-home"), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
        )
        out, err = script.communicate(timeout=900)
    finally:
        if script.poll() is None:
            script.send_signal(signal.SIGINT)  # the script's trap stops what it started
            script.wait(timeout=60)
        if replacement is not None:
            os.killpg(replacement.pid, signal.SIGTERM)
            replacement.wait(timeout=30)
    assert script.returncode == 0, err[-3000:]
    path = Path(out.strip().splitlines()[-1])
    summary = json.loads((path / "summary.json").read_text())
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "degraded" and summary["participation"]["degraded_rounds"]
    assert any(r.get("clients/degraded") == 1 for r in records[1:])
    assert records[-1]["clients/num-clients"] == 3  # the restarted SuperNode rejoined
    assert not processes_of(work)


def test_ctrl_c_stops_every_process_the_script_started(tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = subprocess.Popen(
        [str(SCRIPT), "--supernodes", "2", "--rounds", "50", "--run-dir", str(tmp_path / "runs"), "--work", str(work),
         "--run-config", 'attacks="none"'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 300
        while "[ROUND 1/50]" not in ((work / "run.log").read_text() if (work / "run.log").exists() else ""):
            assert time.monotonic() < deadline and script.poll() is None, "round 1 never started"
            time.sleep(0.5)
        assert len(processes_of(work)) >= 4  # SuperLink, its SuperExec and ServerApp, SuperNodes, …
        script.send_signal(signal.SIGINT)  # what Ctrl-C sends (to the script alone here: the harder case)
        script.communicate(timeout=90)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 130
    assert not processes_of(work), "processes left running after Ctrl-C"
