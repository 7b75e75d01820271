"""`fedls.studies.reports`: headline rows against baselines, run listing, Markdown/JSON, on run
directories written by hand (no simulation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedls.config import RunConfig
from fedls.errors import FedlsError
from fedls.run_dir import RunDirectory
from fedls.studies.reports import (
    GRADIENT,
    MODEL_INVERSION,
    UTILITY,
    find_runs,
    list_runs,
    report_json,
    report_markdown,
    report_run,
)

G = "leakage/gradient/"
MI = "leakage/model_inversion/"


def make_run(root: Path, name: str, records: list[dict[str, Any]], summary: dict[str, Any] | None, **config: Any) -> RunDirectory:
    """A run directory as the simulator leaves it: config.toml, metrics.jsonl, summary.json."""
    run = RunDirectory.create(RunConfig(run_dir=str(root), name=name, rounds=len(records) - 1, **config))
    for record in records:
        run.append_metrics(record)
    if summary is not None:
        run.write_summary(summary)
    return run


def attacked_records() -> list[dict[str, Any]]:
    return [
        {"round": 0, "global/accuracy": 0.1, "global/ece": 0.05, "global/loss": 2.3},
        {"round": 1, "global/accuracy": 0.6, "global/ece": 0.08, "global/loss": 1.1,
         f"{G}label_count_accuracy": 1.0, f"{G}label_count_mae": 0.0, f"{G}label_count_mae_chance": 4.0,
         "per_client": {"gradient/count_exact": {"0": 1.0}}},
        {"round": 2, "global/accuracy": 0.9, "global/ece": 0.03, "global/loss": 0.4,
         f"{G}label_count_accuracy": 0.5, f"{G}label_count_mae": 0.5, f"{G}label_count_mae_chance": 3.0,
         f"{MI}acc1": 0.7, f"{MI}acc1_low": 0.6, f"{MI}acc1_high": 0.8, f"{MI}baseline_acc1": 0.12, f"{MI}lift": 0.58,
         "per_client": {"gradient/count_exact": {"0": 1.0, "1": 0.0}}},
    ]


def summary(status: str = "complete", gradient: str = "honest", model: str = "honest") -> dict[str, Any]:
    return {"status": status, "rounds_completed": 2, "fedls_version": "0.1.0", "git_commit": "abc123",
            "attacks": [a for a, m in (("gradient_attack", gradient), ("model_attack", model)) if m != "off"],
            "threat_mode": {"gradient": gradient, "model": model}, "final": {}, "initial": {}}


def test_report_groups_rows_with_direction_and_baselines(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", attacked_records(), summary(), alpha=-0.05)
    report = report_run(run.path)
    assert report.status == "complete" and report.alpha == -0.05 and report.git_commit == "abc123"
    rows = {row.tag: row for row in report.rows}
    accuracy = rows["global/accuracy"]
    assert (accuracy.group, accuracy.value, accuracy.baseline, accuracy.baseline_label, accuracy.arrow) == (
        UTILITY, 0.9, 0.1, "round 0", "↑")
    counts = rows[f"{G}label_count_accuracy"]
    assert counts.group == GRADIENT and counts.arrow == "↑" and counts.value == 0.5
    assert counts.mean == pytest.approx(0.75) and counts.rounds_measured == 2
    mae = rows[f"{G}label_count_mae"]
    assert mae.arrow == "↓" and mae.baseline == 3.0 and mae.baseline_label == "even-spread guess"  # the same round's chance
    acc1 = rows[f"{MI}acc1"]
    assert acc1.group == MODEL_INVERSION and acc1.baseline == 0.12 and acc1.interval == (0.6, 0.8) and acc1.round == 2
    # never measured → no row (not a zero); the chance value is a baseline, not a row
    assert f"{G}recon_psnr" not in rows and f"{G}label_count_mae_chance" not in rows
    assert all("per_client" not in row.tag for row in report.rows)


def test_latest_measurement_is_reported_when_the_last_round_skipped_an_attack(tmp_path: Path) -> None:
    records = attacked_records()
    records.append({"round": 3, "global/accuracy": 0.91})
    report = report_run(make_run(tmp_path, "r", records, summary()).path)
    assert report.value("global/accuracy") == 0.91
    row = next(r for r in report.rows if r.tag == f"{MI}acc1")
    assert (row.value, row.round) == (0.7, 2)


def test_markdown_and_json(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", attacked_records(), summary(gradient="malicious-fedsgd"))
    report = report_run(run.path)
    text = report_markdown(report)
    assert text.startswith("# Run r")
    assert text.index("## Utility") < text.index("## Gradient leakage") < text.index("## Model-inversion leakage")
    assert "threat mode malicious-fedsgd" in text and "malicious server" in text
    assert "| attack Acc@1 (judge) | ↑ | 0.7 [0.6, 0.8] | 2 |" in text
    assert "0.1 (round 0)" in text
    data = json.loads(report_json(report))
    assert data["threat_mode"] == {"gradient": "malicious-fedsgd", "model": "honest"}
    assert {row["tag"] for row in data["rows"]} >= {"global/accuracy", f"{MI}acc1", f"{G}label_count_accuracy"}


def test_attacks_off_is_said_plainly(tmp_path: Path) -> None:
    records = [{"round": 0, "global/accuracy": 0.1}, {"round": 1, "global/accuracy": 0.8}]
    run = make_run(tmp_path, "quiet", records, summary(gradient="off", model="off"), attacks="none")
    report = report_run(run.path)
    assert report.attacks == "none"
    text = report_markdown(report)
    assert "attacks: none" in text and "measured no leakage" in text
    assert "not measured: this attack was off" in text


def test_a_run_without_summary_is_running_or_killed_and_uses_its_config(tmp_path: Path) -> None:
    run = make_run(tmp_path, "live", attacked_records()[:2], None, attacks="gradient")
    report = report_run(run.path)
    assert report.status == "running or killed" and report.rounds_completed == 1
    assert report.threat_mode == {"gradient": "honest", "model": "off"} and report.attacks == "gradient"


def test_list_runs_finds_nested_runs_and_skips_run_subfolders(tmp_path: Path) -> None:
    make_run(tmp_path, "a", attacked_records(), summary())
    nested = tmp_path / "compare" / "neg"
    make_run(nested, "seed-0", attacked_records()[:2], summary(status="interrupted"))
    analysis = tmp_path / "a" / "analysis" / "x"
    analysis.mkdir(parents=True)
    (analysis / "config.toml").write_text("not a run")  # inside a run: never searched
    assert [p.relative_to(tmp_path).as_posix() for p in find_runs(tmp_path)] == ["a", "compare/neg/seed-0"]
    listing = {item.path: item for item in list_runs(tmp_path)}
    assert listing["a"].status == "complete" and listing["a"].rounds == "2/2"
    assert (listing["a"].accuracy, listing["a"].label_count_accuracy, listing["a"].mi_acc1) == (0.9, 0.5, 0.7)
    assert listing["compare/neg/seed-0"].status == "interrupted" and listing["compare/neg/seed-0"].mi_acc1 is None


def test_a_damaged_run_is_listed_with_its_problem(tmp_path: Path) -> None:
    make_run(tmp_path, "good", attacked_records(), summary())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.toml").write_text("alpha = [")
    listing = {item.path: item for item in list_runs(tmp_path)}
    assert listing["good"].status == "complete"
    assert listing["bad"].status.startswith("unreadable:") and "fix the TOML" in listing["bad"].status


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: (p / "f.txt").write_text("x") and p / "f.txt"])
def test_bad_run_paths_are_one_line_errors(tmp_path: Path, make: Any) -> None:
    path = make(tmp_path)
    with pytest.raises(FedlsError):
        report_run(path)
    with pytest.raises(FedlsError):
        list_runs(path)
    with pytest.raises(FedlsError, match="not a fedls run directory"):
        report_run(tmp_path)
