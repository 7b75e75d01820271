"""`fedls attack model` and `fedls prior train` on a hand-made run directory (tiny budgets)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fedls.cli import app
from fedls.config import RunConfig
from fedls.models import build_model
from fedls.run_dir import RunDirectory

TINY = ["--pool", "60", "--candidates", "2", "--samples", "1", "--steps", "3", "--prior-steps", "3",
        "--surrogate-inits", "2", "--option", "eval_epochs=1", "--option", "selection_augmentations=2",
        "--option", "eval_surrogate_epochs=2", "--device", "cpu"]


def test_attack_model_command_writes_report(tmp_path):
    run = RunDirectory.create(RunConfig(run_dir=str(tmp_path / "runs"), name="r"))
    run.save_model(build_model("cnn", (1, 8, 8), 10).state_dict())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["attack", "model", "--checkpoint", str(run.path), "--classes", "0,4",
                                      "--cache-dir", str(tmp_path / "cache"), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == [0, 4]
    assert {"acc1", "acc5", "delta_eval", "xi_train", "xi_test"} <= set(report["metrics"])
    assert len(report["grad_cosine_per_step"]["mean"]) == 2
    assert (out / "attack_vs_real.png").stat().st_size > 0 and (out / "prior_samples.png").is_file()


def test_attack_model_command_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["attack", "model", "--checkpoint", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    run = RunDirectory.create(RunConfig(run_dir=str(tmp_path / "runs"), name="r"))
    (run.path / "model.pt").write_bytes(b"garbage")
    result = CliRunner().invoke(app, ["attack", "model", "--checkpoint", str(run.path), "--cache-dir", str(tmp_path), *TINY])
    assert result.exit_code == 2 and "cannot load weights" in result.output
    result = CliRunner().invoke(app, ["attack", "model", "--checkpoint", str(run.path), "--loss", "l2"])
    assert result.exit_code == 2 and "loss" in result.output


def test_prior_train_command(tmp_path):
    out = tmp_path / "prior"
    args = ["prior", "train", "--steps", "3", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "prior.json").read_text())
    assert info["public_images"] == 359 and 0 <= info["quality"]["confidence"] <= 1
    assert (out / "prior_samples.png").is_file()
