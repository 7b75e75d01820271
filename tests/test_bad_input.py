"""The bad-input battery of the option schema: wrong types and ranges in TOML files and flags
are one line on stderr, exit code 2, before Ray starts, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedls.cli import app

runner = CliRunner()


def _simulate(tmp_path: Path, *args: str) -> tuple[int, str]:
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["simulate", "--rounds", "1", "--clients", "2", "--run-dir", str(runs), *args])
    assert not runs.exists(), "bad input must not create a run directory"
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('lr = "fast"', "lr: Input should be a valid number"),
        ('seed = "abc"', "seed: Input should be a valid integer"),
        ('alpha = "x"', "alpha: Input should be a valid number"),
        ('round_timeout = "x"', "round_timeout: Input should be a valid number"),
        ("defense_options = 3", "defense_options: Input should be a valid dictionary"),
        ('gradient_attack = "yes"', "gradient_attack: Input should be a valid dictionary"),
        ("model_attack = [1, 2]", "model_attack: Input should be a valid dictionary"),
        ('client_cpus = "many"', "client_cpus: Input should be a valid number"),
        ("warmup_rounds = 1.5", "warmup_rounds: Input should be a valid integer, got a number with a fractional part"),
        ("alpha = 2.0", "alpha: Input should be less than or equal to 1"),
        ("alpha = -inf", "alpha: must be a finite number"),
        ("lr = inf", "lr: must be a finite number"),
        ("[central_dp]\nnoise_multiplier = nan", "central_dp: noise_multiplier"),
        ("[gradient_attack]\nthreat = \"sneaky\"", "gradient_attack: threat: Input should be"),
        ("[gradient_attack]\nrecon_steps = -1", "gradient_attack: recon_steps: Input should be greater than or equal to 0"),
        ("[model_attack]\nevery = 0", "model_attack: every: Input should be greater than or equal to 1"),
        ("[model_attack.ppa]\nbogus = 1", "model_attack: ppa.bogus: unknown option"),
        ("[central_dp]\nclipping_norm = -1", "central_dp: clipping_norm: Input should be greater than 0"),
        ("misspelled_option = 1", "misspelled_option: unknown option"),
    ],
)
def test_bad_toml_is_one_line_exit_2(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml + "\n")
    code, output = _simulate(tmp_path, "--config", str(config))
    assert code == 2, output
    assert message in " ".join(output.split()), output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-classes", "0"], "Invalid value for '--num-classes': 0 is not in the range x>=2"),
        (["--mia-classes", "99"], "classes"),
        (["--defense-option", "beta=0.01"], "defense options were given without a defense"),
        (["--partition", "dirichlet", "--dirichlet-beta", "0"], "'--dirichlet-beta': 0.0 is not in the range x>0"),
        (["--client-cpus", "nan"], "Invalid value for '--client-cpus': 'nan' is not a finite number"),
        (["--lr", "inf"], "Invalid value for '--lr': 'inf' is not a finite number"),
        (["--alpha", "-inf"], "Invalid value for '--alpha': '-inf' is not a finite number"),
        (["--seed=-1"], "Invalid value for '--seed': -1 is not in the range x>=0"),
        (["--attacks", "some"], "Invalid value for '--attacks'"),
    ],
)
def test_bad_flags_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = _simulate(tmp_path, *args)
    assert code == 2, output
    assert message in " ".join(output.split()), output


def test_model_inversion_without_public_data_is_refused_before_the_run(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    for identity in ("a", "b", "c"):
        (tmp_path / "faces" / identity).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), i * 30, np.uint8)).save(tmp_path / "faces" / identity / f"{i}.png")
    code, output = _simulate(tmp_path, "--dataset", "imagefolder", "--data-dir", str(tmp_path / "faces"), "--num-classes", "3",
                             "--image-size", "8", "--model", "mlp")
    assert code == 2 and "model inversion needs the server's public data" in output, output


def test_a_cache_folder_that_cannot_be_written_is_refused_before_the_prior_trains(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, output = _simulate(tmp_path, "--mia-option", f"cache_dir={blocker / 'cache'}")
    assert code == 2 and "cache folder" in output and "is not a folder" in output, output


@pytest.mark.parametrize("name", ["[/]", "[bold]x[/bold]", "a[base]b", "[[setting]]"])
def test_error_text_is_printed_literally_even_when_it_looks_like_markup(tmp_path: Path, name: str) -> None:
    code, output = _simulate(tmp_path, "--dataset", name)
    assert code == 2 and f"unknown dataset '{name}'" in output and output.count("\n") == 1, output


def test_a_partition_the_data_cannot_give_is_refused_before_the_run(tmp_path: Path) -> None:
    """700 by-class clients share 5 classes: 140 per class, but class 0 has 139 training images."""
    code, output = _simulate(tmp_path, "--partition", "by-class", "--clients", "700", "--attacks", "none")
    assert code == 2 and "samples for 140 clients; use fewer clients" in output and output.count("\n") == 1, output


def test_a_taken_run_name_is_refused_before_anything_starts(tmp_path: Path) -> None:
    taken = tmp_path / "runs" / "mine"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["simulate", "--rounds", "1", "--clients", "2", "--run-dir", str(tmp_path / "runs"),
                                 "--name", "mine"])
    assert result.exit_code == 2 and result.output.startswith("error: run directory") and result.output.count("\n") == 1
    assert [p.name for p in taken.iterdir()] == ["notes.txt"] and (taken / "notes.txt").read_text() == "keep me"
