"""End to end through the real Flower/Ray path on the bundled digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fedls.assembly import load_splits
from fedls.config import RunConfig
from fedls.federation.simulation import SimulationResult, simulate
from fedls.models import build_model
from fedls.run_dir import RunDirectory

ROUNDS = 3


# A model-inversion budget small enough for the suite (the defaults are measured in BENCHMARKS.md).
TINY_MODEL_ATTACK = {
    "every": 2,
    "prior": {"steps": 3},
    "ppa": {"pool_size": 100, "candidates_per_class": 2, "samples_per_class": 2, "steps": 3, "selection_augmentations": 2},
    "evaluation": {"epochs": 1, "surrogate_inits": 2, "surrogate_epochs": 2},
}


def tiny_config(run_dir: Path, name: str, **changes: object) -> RunConfig:
    """The default attacks (gradient leakage from every real update, model inversion every k
    rounds) with a tiny model-inversion budget, and 2 of the 4 clients drawn each round (the
    draw is part of what must repeat under the same seed; every other simulation test runs
    with all clients)."""
    values: dict[str, object] = dict(
        clients=4, fraction_train=0.5, rounds=ROUNDS, local_epochs=1, alpha=-0.05, warmup_rounds=1, ramp_rounds=1,
        run_dir=str(run_dir), name=name, seed=7, model_attack=TINY_MODEL_ATTACK,
    )
    values.update(changes)
    return RunConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, SimulationResult]:
    root = tmp_path_factory.mktemp("runs")
    return simulate(tiny_config(root, "a")), simulate(tiny_config(root, "b"))


UTILITY = ("global/", "clients/train_loss", "clients/num-examples", "clients/local_steps", "train/alpha")


def utility(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith(UTILITY)} for r in records]


def test_run_completes_and_learns(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    result = two_runs[0]
    records = result.run.metrics()
    assert [r["round"] for r in records] == list(range(ROUNDS + 1))  # round 0 is the initial model
    assert records[-1]["global/accuracy"] > records[0]["global/accuracy"] + 0.2
    assert result.summary["status"] == "complete" and result.run.is_complete()
    # the α in force follows the warm-up: round 1 unsmoothed, then -0.05
    assert [r.get("train/alpha") for r in records[1:]] == [0.0, -0.05, -0.05]
    assert all(r["clients/num-clients"] == 2 and r["clients/missing"] == 0 for r in records[1:])


def test_both_attacks_are_on_by_default(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    records = two_runs[0].run.metrics()
    for record in records[1:]:  # gradient leakage from every client's real update, every round
        assert 0.0 <= record["leakage/gradient/label_count_accuracy"] <= 1.0
        assert record["leakage/gradient/label_count_mae"] >= 0.0
        assert len(record["per_client"]["gradient/count_exact"]) == 2
    drawn = [sorted(r["per_client"]["gradient/count_exact"]) for r in records[1:]]
    assert len({tuple(clients) for clients in drawn}) > 1 and all(set(c) <= {"0", "1", "2", "3"} for c in drawn)
    attacked = [r["round"] for r in records if "leakage/model_inversion/acc1" in r]
    assert attacked == [2, 3]  # every k = 2 rounds and at the last round
    summary = two_runs[0].summary
    assert summary["attacks"] == ["gradient_attack", "model_attack"]
    assert summary["threat_mode"] == {"gradient": "honest", "model": "honest"}


def test_attacks_never_change_training(two_runs: tuple[SimulationResult, SimulationResult], tmp_path: Path) -> None:
    """Same config and seed: identical utility per round with the attacks off, on (default), and
    with a malicious FedSGD probe (it adds a gradient to the reply, drawn from its own stream)."""
    attacked = utility(two_runs[0].run.metrics())
    off = simulate(tiny_config(tmp_path, "off", attacks="none"))
    assert utility(off.run.metrics()) == attacked
    assert not any(k.startswith("leakage/") for r in off.run.metrics() for k in r)
    probed = simulate(
        tiny_config(tmp_path, "probe", attacks="gradient", gradient_attack={"threat": "malicious-fedsgd", "recon_steps": 3})
    )
    assert utility(probed.run.metrics()) == attacked
    assert probed.summary["threat_mode"]["gradient"] == "malicious-fedsgd"
    assert all(r["leakage/gradient/probe_label_success"] == 1.0 for r in probed.run.metrics()[1:])


def test_run_directory_is_complete(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    path = two_runs[0].run.path
    for name in ("config.toml", "metrics.jsonl", "summary.json", "model.pt"):
        assert (path / name).is_file(), name
    config = RunDirectory.open(path).config()
    assert config.alpha == -0.05 and config.clients == 4
    state = torch.load(path / "model.pt", weights_only=True)
    splits = load_splits(config)
    model = build_model(config.model, splits.image_shape, splits.num_classes)
    model.load_state_dict(state)


def test_tensorboard_has_the_expected_tags(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    events = EventAccumulator(str(two_runs[0].run.path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"global/accuracy", "global/loss", "global/ece", "global/mean_confidence", "global/mean_logit_norm",
                "train/alpha", "clients/train_loss", "clients/num-examples", "clients/missing",
                "leakage/gradient/label_count_accuracy", "leakage/model_inversion/acc1"}
    assert expected <= tags
    assert not any("client_" in tag for tag in tags)  # per-client values are not one chart each
    assert [e.step for e in events.Scalars("global/accuracy")] == list(range(ROUNDS + 1))


def test_same_config_and_seed_give_identical_metrics(two_runs: tuple[SimulationResult, SimulationResult]) -> None:
    # with both attacks on: the same counts recovered, the same model-inversion numbers
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

    config = RunConfig(clients=2, rounds=6, local_epochs=1, run_dir=str(tmp_path), name="stopped", attacks="none")
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
    from fedls.federation.faults import TooFewClients

    config = RunConfig(
        clients=2, rounds=5, local_epochs=1, lr=1e30, max_grad_norm=0.0, run_dir=str(tmp_path), name="nan", attacks="none"
    )
    with pytest.raises(TooFewClients, match="round 1: only 0 of 2 clients replied.*first failure: .*training loss became nan"):
        simulate(config)
    summary = RunDirectory.open(tmp_path / "nan").summary()
    assert summary is not None and summary["status"] == "failed" and summary["rounds_completed"] == 0
    assert not (tmp_path / "nan" / "model.pt").exists()
