"""End to end through the real Flower/Ray path on the bundled digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fedls.config import RunConfig
from fedls.federation.simulation import SimulationResult, simulate
from fedls.models import build_model
from fedls.run_dir import RunDirectory

ROUNDS = 3


def tiny_config(run_dir: Path, name: str) -> RunConfig:
    return RunConfig(
        clients=3, rounds=ROUNDS, local_epochs=1, alpha=-0.05, warmup_rounds=1, ramp_rounds=1,
        run_dir=str(run_dir), name=name, seed=7,
        gradient_attack={"probe": "fedsgd", "clients": 1, "recon_steps": 5},
    )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, SimulationResult]:
    root = tmp_path_factory.mktemp("runs")
    return simulate(tiny_config(root, "a")), simulate(tiny_config(root, "b"))


def test_run_completes_and_learns(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    result = two_runs[0]
    records = result.run.metrics()
    assert [r["round"] for r in records] == list(range(ROUNDS + 1))  # round 0 is the initial model
    assert records[-1]["global/accuracy"] > records[0]["global/accuracy"] + 0.2
    assert result.summary["status"] == "complete" and result.run.is_complete()
    # the α in force follows the warm-up: round 1 unsmoothed, then -0.05
    assert [r.get("train/alpha") for r in records[1:]] == [0.0, -0.05, -0.05]
    assert records[-1]["clients/num-clients"] == 3 and records[-1]["clients/missing"] == 0


def test_curious_server_attacks_a_probed_client_each_round(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    for record in two_runs[0].run.metrics()[1:]:
        assert record["gradient/clients_attacked"] == 1
        assert record["gradient/success_rate"] == 1.0  # single-sample probe with a biased head: exact


def test_run_directory_is_complete(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    path = two_runs[0].run.path
    for name in ("config.toml", "metrics.jsonl", "summary.json", "model.pt"):
        assert (path / name).is_file(), name
    config = RunDirectory.open(path).config()
    assert config.alpha == -0.05 and config.clients == 3
    state = torch.load(path / "model.pt", weights_only=True)
    model = build_model(config.model, (1, 8, 8), 10)
    model.load_state_dict(state)


def test_tensorboard_has_the_expected_tags(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    events = EventAccumulator(str(two_runs[0].run.path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"global/accuracy", "global/loss", "global/ece", "global/mean_confidence", "global/mean_logit_norm",
                "train/alpha", "clients/train_loss", "clients/num-examples", "clients/missing"}
    assert expected <= tags
    assert [e.step for e in events.Scalars("global/accuracy")] == list(range(ROUNDS + 1))


def test_same_config_and_seed_give_identical_metrics(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    # with the gradient attack on: the same clients are probed, the same labels recovered
    def strip(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]

    assert strip(two_runs[0].run.metrics()) == strip(two_runs[1].run.metrics())


def test_existing_run_name_is_refused(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    from fedls.errors import ConfigError

    existing = two_runs[0].run.path
    before = (existing / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="already exists"):
        simulate(tiny_config(existing.parent, existing.name))
    assert (existing / "metrics.jsonl").read_text() == before


def test_ctrl_c_keeps_finished_rounds_and_marks_the_run(tmp_path: Path) -> None:
    import os
    import signal

    from fedls.federation.simulation import RunInterrupted

    def press_ctrl_c(server_round: int, record: dict) -> None:
        if server_round == 1:
            os.kill(os.getpid(), signal.SIGINT)

    config = RunConfig(clients=2, rounds=6, local_epochs=1, run_dir=str(tmp_path), name="stopped")
    with pytest.raises(RunInterrupted, match="interrupted after round"):
        simulate(config, on_round=press_ctrl_c)
    run = RunDirectory.open(tmp_path / "stopped")
    summary = run.summary()
    assert summary is not None and summary["status"] == "interrupted" and not run.is_complete()
    assert 1 <= summary["rounds_completed"] < 6
    assert [r["round"] for r in run.metrics()] == list(range(summary["rounds_completed"] + 1))
    assert run.model_path.is_file()  # the last finished round's global model, for inspection
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_a_round_where_every_client_fails_ends_the_run_with_the_reason(tmp_path: Path) -> None:
    from fedls.federation.server import ClientsFailed

    config = RunConfig(clients=2, rounds=5, local_epochs=1, lr=1e30, max_grad_norm=0.0, run_dir=str(tmp_path), name="nan")
    with pytest.raises(ClientsFailed, match="round 1: every client failed .*training loss became nan"):
        simulate(config)
    summary = RunDirectory.open(tmp_path / "nan").summary()
    assert summary is not None and summary["status"] == "failed" and summary["rounds_completed"] == 0
    assert not (tmp_path / "nan" / "model.pt").exists()
