"""`fedls compare`: experiment files, the table, plot and HParams, and resuming after a crash."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fedls.compare import load_experiment, quick_experiment, run_comparison
from fedls.compare.experiment import build_experiment, parse_setting_spec
from fedls.compare.table import MISSING, build_table
from fedls.config import RunConfig
from fedls.errors import ConfigError, FedlsError
from fedls.federation.server import RunInterrupted
from fedls.run_dir import RunDirectory

TINY = {"dataset": "digits", "clients": 2, "rounds": 2, "local_epochs": 1, "batch_size": 32, "seed": 3, "device": "cpu"}
REPO = Path(__file__).resolve().parents[1]


def tiny_experiment(out: Path):
    return build_experiment(
        TINY,
        [{"name": "base"}, {"name": "ls-neg", "alpha": -0.05, "warmup_rounds": 1, "ramp_rounds": 0}],
        out,
    )


def test_compare_end_to_end_and_resume(tmp_path):
    """Real simulations: 2 settings × 2 clients × 2 rounds, then a crash and a resume."""
    experiment = tiny_experiment(tmp_path / "cmp")
    events = []
    result = run_comparison(experiment, on_progress=events.append, observer_factory=lambda *a: [])
    assert [o.status for o in result.outcomes] == ["complete", "complete"]
    assert [(e.setting, e.round) for e in events if e.kind == "round"] == [(s, r) for s in ("base", "ls-neg") for r in (0, 1, 2)]

    rows = list(csv.DictReader(result.csv.open()))
    assert [r["setting"] for r in rows] == ["base", "ls-neg"]
    assert 0 < float(rows[0]["test_acc"]) <= 1 and rows[0]["test_acc_delta"] == "0.0"
    final = RunDirectory(tmp_path / "cmp" / "ls-neg").summary()["final"]
    assert float(rows[1]["test_acc"]) == pytest.approx(final["global/accuracy"])
    assert float(rows[1]["test_acc_delta"]) == pytest.approx(final["global/accuracy"] - float(rows[0]["test_acc"]))
    assert rows[0]["attack_acc1"] == "" and rows[0]["epsilon"] == ""  # no attacks, no DP: nothing invented
    markdown = result.markdown.read_text()
    assert "| base |" in markdown and MISSING in markdown and "Test Acc" in markdown
    assert result.plot.read_bytes()[:4] == b"\x89PNG"
    events_files = sorted((result.hparams / "base").rglob("events.out.tfevents.*"))
    assert events_files, "HParams entry for the baseline"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plugins = set()
    for file in events_files:
        acc = EventAccumulator(str(file))
        acc.Reload()
        try:
            plugins |= set(acc.PluginTagToContent("hparams"))
        except KeyError:  # the writer's other event file holds only the metric scalars
            pass
    assert "_hparams_/session_start_info" in plugins

    # a crash in the second setting: its directory is left "interrupted"
    second = RunDirectory(tmp_path / "cmp" / "ls-neg")
    summary = second.summary()
    second.write_summary({**summary, "status": "interrupted"})
    calls = []

    def counting(config, **kwargs):  # the rerun itself is simulated cheaply; resuming is what is tested
        calls.append(config.name)
        return fake_simulate(set(), [])(config, **kwargs)

    again = run_comparison(experiment, simulate_fn=counting, observer_factory=lambda *a: [])
    assert calls == ["ls-neg"]  # only the missing setting ran
    assert [o.status for o in again.outcomes] == ["skipped", "complete"]
    aside = again.outcomes[1].moved_aside
    assert aside is not None and aside.parent.name == "_aside" and "interrupted" in aside.name
    assert json.loads((aside / "summary.json").read_text())["status"] == "interrupted"  # kept, not deleted
    assert RunDirectory(tmp_path / "cmp" / "ls-neg").is_complete()


def fake_simulate(fail_on: set[str], seen: list[str]):
    """Writes a run directory like simulate does; raises for the named settings mid-run."""

    def run(config: RunConfig, observer_factory=None, on_round=None):
        seen.append(config.name)
        run_dir = RunDirectory.create(config)
        for r in range(config.rounds + 1):
            record = {"round": r, "global/accuracy": 0.5 + 0.1 * r + (0.05 if config.alpha else 0.0), "global/ece": 0.1}
            run_dir.append_metrics(record)
            if config.name in fail_on and r == 1:
                run_dir.write_summary({"status": "failed"})
                raise FedlsError("boom in on_round")
            if on_round:
                on_round(r, record)
        run_dir.write_summary({"status": "complete", "final": record})

    return run


def test_failed_setting_is_recorded_then_rerun(tmp_path):
    experiment = tiny_experiment(tmp_path / "c")
    seen: list[str] = []
    first = run_comparison(experiment, simulate_fn=fake_simulate({"ls-neg"}, seen))
    assert [o.status for o in first.outcomes] == ["complete", "failed"] and seen == ["base", "ls-neg"]
    rows = list(csv.DictReader(first.csv.open()))
    assert rows[1]["status"] == "failed"
    assert not (first.hparams / "ls-neg").exists()  # HParams only for finished settings

    seen.clear()
    second = run_comparison(experiment, simulate_fn=fake_simulate(set(), seen))
    assert seen == ["ls-neg"]
    assert [o.status for o in second.outcomes] == ["skipped", "complete"]
    assert list((tmp_path / "c" / "_aside").iterdir())[0].name == "ls-neg-failed-1"
    rows = list(csv.DictReader(second.csv.open()))
    assert float(rows[1]["test_acc_delta"]) == pytest.approx(0.05)

    seen.clear()
    third = run_comparison(experiment, simulate_fn=fake_simulate(set(), seen))
    assert seen == [] and all(o.status == "skipped" for o in third.outcomes)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RunInterrupted])
def test_keyboard_interrupt_stops_and_resume_finishes(tmp_path, stop):
    """Ctrl-C inside a simulation surfaces as RunInterrupted; it stops the whole comparison."""
    experiment = tiny_experiment(tmp_path / "k")
    seen: list[str] = []

    def interrupted(config, observer_factory=None, on_round=None):
        if config.name == "ls-neg":
            run_dir = RunDirectory.create(config)
            run_dir.write_summary({"status": "interrupted"})
            raise stop("stopped")
        return fake_simulate(set(), seen)(config, observer_factory, on_round)

    with pytest.raises(KeyboardInterrupt):
        run_comparison(experiment, simulate_fn=interrupted)
    assert (tmp_path / "k" / "results.csv").exists()  # written after the first setting
    run_comparison(experiment, simulate_fn=fake_simulate(set(), seen))
    assert seen == ["base", "ls-neg"]
    assert (tmp_path / "k" / "_aside" / "ls-neg-interrupted-1").is_dir()


def test_table_deltas_and_missing_values():
    entries = [
        ("base", "none", 0.0, "complete", {"global/accuracy": 0.9, "mia/acc1": 0.8, "mia/delta_eval": 1.0}),
        ("dp", "dp", 0.0, "complete", {"global/accuracy": 0.7, "mia/acc1": 0.2, "clients/epsilon": 3.5, "mia/delta_face": 2.0}),
        ("grad", "none", 0.1, "complete", {"global/accuracy": 0.9, "gradient/success_rate": 1.0, "gradient/recon_psnr": 18.5}),
    ]
    table = build_table(entries, "base")
    dp = table.rows[1]
    assert dp.deltas["test_acc"] == pytest.approx(-0.2) and dp.deltas["attack_acc1"] == pytest.approx(-0.6)
    assert dp.values["epsilon"] == 3.5 and dp.deltas["epsilon"] is None  # baseline has no ε
    assert dp.values["delta"] == 2.0 and dp.deltas["delta"] is None  # δ_face vs δ_eval: not comparable
    cells = table.cells(dp)
    assert "70.0% (-20.0)" in cells and "3.50" in cells and cells.count(MISSING) == 6
    grad = table.rows[2]
    assert grad.values["label_recovery"] == 1.0 and grad.values["psnr"] == 18.5 and grad.deltas["psnr"] is None


def test_experiment_validation(tmp_path):
    with pytest.raises(ConfigError, match="move shared options"):
        build_experiment(TINY, [{"name": "a", "rounds": 5}], tmp_path)
    with pytest.raises(ConfigError, match="unknown option"):
        build_experiment(TINY, [{"name": "a", "defense": "mid", "defense_options": {"bta": 1}}], tmp_path)
    with pytest.raises(ConfigError, match="used twice"):
        build_experiment(TINY, [{"name": "a"}, {"name": "a"}], tmp_path)
    with pytest.raises(ConfigError, match="baseline"):
        build_experiment(TINY, [{"name": "a"}], tmp_path, baseline="zzz")
    exp = build_experiment(TINY, [{"name": "a"}, {"name": "dp", "defense": "dp", "defense_options": {"epsilon": 5.0}}], tmp_path)
    assert exp.setting("dp").config.defense_options == {"epsilon": 5.0, "rounds": 2}
    assert exp.setting("dp").config.name == "dp" and exp.setting("dp").config.run_dir == str(tmp_path)
    assert parse_setting_spec("mid=mid:beta=0.01,bottleneck=16@-0.05") == {
        "name": "mid", "defense": "mid", "defense_options": {"beta": 0.01, "bottleneck": 16}, "alpha": -0.05,
    }
    quick = quick_experiment(RunConfig(**TINY), ["none=none", "neg=none@-0.05"], tmp_path / "q")
    assert [s.config.alpha for s in quick.settings] == [0.0, -0.05]


@pytest.mark.parametrize("name", ["defense_comparison.toml", "smoothing_sweep.toml"])
def test_shipped_experiment_files_validate(name, tmp_path):
    experiment = load_experiment(REPO / "experiments" / name, out=tmp_path)
    assert len(experiment.settings) >= 2
    assert len({s.config.dataset for s in experiment.settings}) == 1


def test_a_finished_run_of_another_configuration_is_not_reused(tmp_path):
    experiment = tiny_experiment(tmp_path / "c")
    seen: list[str] = []
    run_comparison(experiment, simulate_fn=fake_simulate(set(), seen))
    other_seed = tiny_experiment(tmp_path / "c")
    for setting in other_seed.settings:
        setting.config.seed = 99
    with pytest.raises(ConfigError, match="another configuration .*seed"):
        run_comparison(other_seed, simulate_fn=fake_simulate(set(), seen))
