"""The analysis commands' bad inputs end as one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import fedls.cli.analysis  # noqa: F401  (registers the commands)
from fedls.cli.app import app

runner = CliRunner()


def _fails(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert needle in result.output


def test_embeddings_missing_run_dir(tmp_path: Path) -> None:
    _fails(["embeddings", str(tmp_path / "nope")], "does not exist")


def test_embeddings_folder_that_is_not_a_run(tmp_path: Path) -> None:
    _fails(["embeddings", str(tmp_path)], "not a fedls run directory")


def test_robustness_missing_run_dir(tmp_path: Path) -> None:
    _fails(["robustness", str(tmp_path / "nope")], "does not exist")


def test_robustness_bad_reference(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text('dataset = "digits"\n')
    _fails(["robustness", str(tmp_path / "run"), "--reference", str(tmp_path / "nope")], "does not exist")


def test_run_without_model_file(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text('dataset = "digits"\n')
    _fails(["embeddings", str(tmp_path / "run")], "no final model")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["toy", "--start", "1;2"], "is not 'x,y'"),
        (["toy", "--num-seeds", "0"], "--num-seeds"),
        (["toy", "--alpha", "2"], "out of range"),
        (["toy", "--iterations", "0"], "iterations"),
    ],
)
def test_toy_bad_options(args: list[str], needle: str) -> None:
    _fails(args, needle)


def test_toy_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    _fails(["toy", "--out", str(tmp_path)], "already exists")


def test_toy_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    result = runner.invoke(app, ["toy", "--num-seeds", "1", "--iterations", "300", "--fixed-steps", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("toy.json", "toy_runs.csv", "toy_paths.csv", "toy.png", "toy_summary.png"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
