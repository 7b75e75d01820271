"""`fedls compare` never replaces a file it did not write, checks everything before writing, and
resumes past run directories that a crash or a full disk left damaged (issue 16, items 3 and 4).

No Ray: comparisons are made with a fake simulator (it writes run directories as `simulate`
does), and the command-line tests stop at input that is refused before any run starts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from fedls.cli import app
from fedls.compare import Experiment, check_comparison, load_results, run_comparison
from fedls.compare.experiment import build_experiment
from fedls.compare.results import Manifest
from fedls.compare.runner import check_owned, run_state
from fedls.config import RunConfig
from fedls.errors import CheckpointError, ConfigError
from fedls.outputs import atomic_path, read_json_lines, read_json_object, write_atomic
from fedls.run_dir import RunDirectory
from fedls.studies.reports import list_runs, read_run_files, report_run

TINY = {"dataset": "digits", "clients": 2, "rounds": 2, "local_epochs": 1, "batch_size": 32, "device": "cpu"}
cli = CliRunner()


def no_check(config: RunConfig) -> None:
    """Stands in for the simulator's machine check where a test is about the files only."""


def experiment(out: Path) -> Experiment:
    return build_experiment(TINY, [{"name": "a"}, {"name": "b", "alpha": 0.1}], out, seeds=[0, 1])


def fake_simulate(seen: list[tuple[str, int]]) -> Any:
    def run(config: RunConfig, observer_factory: Any = None, on_round: Any = None) -> None:
        seen.append((Path(config.run_dir).name, config.seed))
        run_dir = RunDirectory.create(config)
        for r in range(config.rounds + 1):
            run_dir.append_metrics({"round": r, "global/accuracy": 0.5 + 0.1 * r + 0.01 * config.seed})
        run_dir.write_summary({"status": "complete", "rounds_completed": config.rounds})

    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# -- item 3: nothing written on bad input, no file of the user replaced -----------------------
def test_a_folder_compare_did_not_write_is_refused_and_left_alone(tmp_path: Path) -> None:
    """The issue's reproduction: notes in results.md survive, one line, exit 2."""
    out = tmp_path / "d"
    out.mkdir()
    (out / "results.md").write_text("notes\n")
    result = cli.invoke(app, ["compare", "-s", "a=none", "-s", "b=none@0.1", "--device", "cuda", "--out", str(out)])
    assert result.exit_code == 2
    refusal = f"{out} exists and was not written by fedls compare; choose another --out or remove it"
    assert one_line(result.output).endswith(refusal)
    assert snapshot(out) == {"results.md": b"notes\n"}


@pytest.mark.parametrize("args", [["--clients", "100000"], ["--device", "cuda"]], ids=["too-many-clients", "no-cuda"])
def test_input_the_machine_refuses_writes_nothing(tmp_path: Path, args: list[str]) -> None:
    """Checked against the machine and the data (not only the schema) before the first file."""
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is good input here")
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new", empty):
        result = cli.invoke(app, ["compare", "-s", "a=none", "-s", "b=none@0.1", "--rounds", "1", "--out", str(out), *args])
        assert result.exit_code == 2
        line = one_line(result.output)
        assert "training samples" in line or "no CUDA GPU" in line
    assert not (tmp_path / "new").exists() and list(empty.iterdir()) == []


def test_bad_input_leaves_an_existing_comparison_untouched(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    run_comparison(experiment(out), simulate_fn=fake_simulate([]), prepare_fn=no_check)
    before = snapshot(out)

    def refuse(config: RunConfig) -> None:
        if Path(config.run_dir).name == "b":
            raise ConfigError("setting b does not fit this machine")

    bigger = build_experiment(TINY, [{"name": "a"}, {"name": "b", "alpha": 0.1}, {"name": "c", "alpha": -0.1}], out, seeds=[0, 1])
    with pytest.raises(ConfigError, match="does not fit"):
        run_comparison(bigger, simulate_fn=fake_simulate([]), prepare_fn=refuse)
    assert snapshot(out) == before  # no run, no rewritten table or manifest
    with pytest.raises(ConfigError, match="another configuration"):  # also refused before anything is written
        check_comparison(build_experiment({**TINY, "rounds": 3}, [{"name": "a"}, {"name": "b"}], out, seeds=[0, 1]), no_check)
    assert snapshot(out) == before


def test_only_new_empty_or_own_folders_are_written(tmp_path: Path) -> None:
    check_owned(tmp_path / "new")
    check_owned(tmp_path)  # empty
    out = tmp_path / "cmp"
    run_comparison(experiment(out), simulate_fn=fake_simulate([]), prepare_fn=no_check)
    check_owned(out)  # its comparison.json marks it: resuming may rewrite the tables
    (out / "comparison.json").write_text("[]")
    with pytest.raises(ConfigError, match="unknown layout.*choose another --out or remove"):
        check_owned(out)
    (out / "comparison.json").write_text('{"layout": "setting/seed-N"}')
    with pytest.raises(ConfigError, match="damaged"):
        check_owned(out)
    with pytest.raises(CheckpointError, match="damaged"):
        Manifest.read(out)  # a one-line error, not a TypeError


def test_outputs_are_replaced_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "results.md"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.md"]
    write_atomic(target, b"new")
    assert target.read_text() == "new"

    out = tmp_path / "cmp"
    run_comparison(experiment(out), simulate_fn=fake_simulate([]), prepare_fn=no_check)
    assert (out / "utility_privacy.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.rglob("*.tmp")]  # no temporary file left behind


# -- item 4: damaged run directories ---------------------------------------------------------
def cut_metrics(run: Path) -> str:
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(text[: len(text) - 9])  # the last line cut mid-JSON
    return "the last line of metrics.jsonl is cut off"


def empty_summary(run: Path) -> str:
    (run / "summary.json").write_text("")
    return "summary.json is empty"


def corrupt_summary(run: Path) -> str:
    (run / "summary.json").write_bytes(b'{"status": "compl' + b"\0" * 20)
    return "summary.json is not valid JSON"


@pytest.mark.parametrize("damage", [cut_metrics, empty_summary, corrupt_summary])
def test_a_damaged_run_counts_as_unfinished_and_is_run_again(tmp_path: Path, damage: Any, caplog: Any) -> None:
    out = tmp_path / "cmp"
    run_comparison(experiment(out), simulate_fn=fake_simulate([]), prepare_fn=no_check)
    damaged = out / "b" / "seed-1"
    why = damage(damaged)
    assert run_state(damaged).kind == "damaged" and why in run_state(damaged).reason
    stats = load_results(out)  # reading never raises; the run is left out
    b = stats.row("b")
    assert [r.status for r in b.runs] == ["complete", "damaged"] and b.status() == "1/2 complete, 1 damaged"

    seen: list[tuple[str, int]] = []
    with caplog.at_level(logging.WARNING, logger="fedls.compare.runner"):
        result = run_comparison(experiment(out), simulate_fn=fake_simulate(seen), prepare_fn=no_check)
    assert seen == [("b", 1)]
    assert [o.status for o in result.outcomes] == ["skipped", "skipped", "skipped", "complete"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"setting b, seed 1: {damaged} counts as unfinished because {why}" in warning and "running it again" in warning
    assert result.outcomes[3].moved_aside == out / "_aside" / "b-seed-1-damaged-1"  # kept, never deleted
    assert read_run_files(damaged).complete and result.stats.row("b").status() == "2/2 complete"


def test_readers_tolerate_cut_off_and_corrupt_files(tmp_path: Path) -> None:
    lines = tmp_path / "metrics.jsonl"
    lines.write_text('{"round": 0}\n[1]\n{"round": 1}\n{"round": 2, "glo')
    read = read_json_lines(lines)
    assert read.records == [{"round": 0}, {"round": 1}]
    assert read.problems == ["line 2 of metrics.jsonl is not a JSON object", "the last line of metrics.jsonl is cut off"]
    assert read_json_lines(tmp_path / "missing.jsonl").records == []
    summary = tmp_path / "summary.json"
    for text, problem in [("", "is empty"), ("  \n", "is empty"), ('{"a": ', "not valid JSON"), ("[]", "not a JSON object")]:
        summary.write_text(text)
        value, why = read_json_object(summary)
        assert value is None and why is not None and problem in why
    assert read_json_object(tmp_path / "missing.json") == (None, None)


def test_reports_show_what_a_damaged_run_holds(tmp_path: Path, caplog: Any) -> None:
    """`fedls report` and `fedls runs` skip a cut-off last line and call a corrupt summary damaged."""
    out = tmp_path / "cmp"
    run_comparison(experiment(out), simulate_fn=fake_simulate([]), prepare_fn=no_check)
    cut_metrics(out / "a" / "seed-0")
    empty_summary(out / "b" / "seed-0")
    with caplog.at_level(logging.WARNING):
        cut = report_run(out / "a" / "seed-0")
    assert cut.status == "complete" and cut.value("global/accuracy") == pytest.approx(0.6)  # round 1: round 2 was cut off
    assert "the last line of metrics.jsonl is cut off" in caplog.text
    broken = report_run(out / "b" / "seed-0")
    assert broken.status == "damaged (summary.json is empty)" and broken.rounds_completed == 2
    listing = {item.path: item for item in list_runs(out)}
    assert listing["b/seed-0"].status == "damaged (summary.json is empty)" and listing["b/seed-0"].accuracy == pytest.approx(0.7)
    result = cli.invoke(app, ["report", str(out / "b" / "seed-0"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "damaged (summary.json is empty)"
