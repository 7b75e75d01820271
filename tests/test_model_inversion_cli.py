"""`fedls attack model` and `fedls prior train` on a hand-made run directory (tiny budgets)."""

from __future__ import annotations

import json
import os

import numpy as np
from typer.testing import CliRunner

from fedls.cli import app
from fedls.config import RunConfig
from fedls.models import build_model
from fedls.run_dir import RunDirectory

TINY = ["--pool-size", "60", "--candidates", "2", "--images-per-class", "1", "--attack-steps", "3", "--prior-steps", "3",
        "--surrogate-inits", "2", "--option", "evaluation.epochs=1", "--option", "ppa.selection_augmentations=2",
        "--option", "evaluation.surrogate_epochs=2", "--device", "cpu"]


def test_attack_model_command_writes_report(tmp_path):
    run = RunDirectory.create(RunConfig(run_dir=str(tmp_path / "runs"), name="r"))
    run.save_model(build_model("cnn", (1, 8, 8), 5).state_dict())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["attack", "model", str(run.path), "--classes", "0,4",
                                      "--cache-dir", str(tmp_path / "cache"), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == [0, 4]
    assert {"acc1", "acc1_low", "acc1_high", "baseline_acc1", "lift", "judge_accuracy", "acc1_reliable", "num_images",
            "acc5", "delta_eval", "xi_train", "xi_test"} <= set(report["metrics"])
    assert report["metrics"]["num_images"] == 2 and report["judge"]["test_accuracy"] == report["metrics"]["judge_accuracy"]
    assert len(report["grad_cosine_per_step"]["mean"]) == 2
    assert (out / "attack_vs_real.png").stat().st_size > 0 and (out / "prior_samples.png").is_file()
    assert (out / "baseline.png").is_file()


def test_attack_model_command_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["attack", "model", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    run = RunDirectory.create(RunConfig(run_dir=str(tmp_path / "runs"), name="r"))
    (run.path / "model.pt").write_bytes(b"garbage")
    result = CliRunner().invoke(app, ["attack", "model", str(run.path), "--cache-dir", str(tmp_path), *TINY])
    assert result.exit_code == 2 and "cannot load weights" in result.output
    result = CliRunner().invoke(app, ["attack", "model", str(run.path), "--loss", "l2"])
    assert result.exit_code == 2 and "--loss" in result.output and result.output.count("\n") == 1
    result = CliRunner().invoke(app, ["attack", "model", str(run.path), "--option", "ppa.bogus=1"])
    assert result.exit_code == 2 and "ppa.bogus: unknown option" in result.output


def test_prior_train_command(tmp_path):
    out = tmp_path / "prior"
    config = tmp_path / "run.toml"  # the judge's budget comes from the run config: a short one keeps this test light
    config.write_text("[model_attack.evaluation]\nepochs = 2\n")
    args = ["prior", "train", "--config", str(config), "--prior-steps", "3", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "prior.json").read_text())
    assert info["public_kind"] == "classes" and info["public_images"] == 896 and 0 <= info["quality"]["confidence"] <= 1
    assert 0 <= info["judge_accuracy"] <= 1
    (judge_meta,) = (tmp_path / "cache" / "judges").glob("*.json")
    assert json.loads(judge_meta.read_text())["epochs"] == 2  # the run config's evaluation section was read
    assert (out / "prior_samples.png").is_file()


def test_simulate_refuses_more_attacked_classes_than_the_task_has(tmp_path):
    """``--mia-classes 99``: one line, exit 2, before Ray starts and before a run directory exists."""
    result = CliRunner().invoke(app, ["simulate", "--rounds", "1", "--clients", "2", "--mia-every", "1", "--mia-classes", "99",
                                      "--run-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "99 is more than the 5 classes" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _identity_folder(root):
    from PIL import Image

    for identity, n in {"a": 6, "b": 5, "c": 4, "d": 3}.items():
        (root / identity).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((10, 10, 3), i * 20, np.uint8)).save(root / identity / f"{i}.png")
    return root


def test_prior_train_uses_the_runs_own_identity_split(tmp_path):
    """Identities a, b are the run's private ones (top 2 by count); the prior must see only c and d."""
    faces = _identity_folder(tmp_path / "faces")
    run_toml = tmp_path / "run.toml"
    run_toml.write_text(f'dataset = "imagefolder"\ndata_dir = "{faces}"\nnum_classes = 2\nimage_size = 16\n')
    out = tmp_path / "prior"
    args = ["prior", "train", "--config", str(run_toml), "--prior-steps", "2", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "prior.json").read_text())
    assert info["private_classes"] == ["a", "b"] and info["public_images"] == 4 + 3


def test_prior_train_refuses_a_split_without_public_data_and_an_unwritable_cache(tmp_path):
    faces = _identity_folder(tmp_path / "faces")
    result = CliRunner().invoke(app, ["prior", "train", "--dataset", "imagefolder", "--data-dir", str(faces),
                                      "--num-classes", "4", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "no public data" in result.output and result.output.count("\n") == 1
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root ignores permission bits; a file in the way is refused for everyone
        read_only = tmp_path / "a-file"
        read_only.write_text("x")
    result = CliRunner().invoke(app, ["prior", "train", "--cache-dir", str(read_only / "cache"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "cache folder" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "p").exists()
