"""Bad input reaches the user as one line and exit code 2, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedls.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "1.5"], "alpha=1.5 is out of range"),
        (["--clients", "0"], "clients must be"),
        (["--rounds", "0"], "rounds must be"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--model", "vit"], "unknown model 'vit'"),
        (["--partition", "zipf"], "unknown partition 'zipf'"),
        (["--dataset", "mnist", "--data-dir", "/definitely/missing"], "no mnist data found"),
        (["--client-cpus", "4096"], "does not fit this machine"),
        (["--device", "cuda"], None),  # fails on machines without CUDA only
        (["--config", "/definitely/missing.toml"], "does not exist"),
        (["--defense", "mid", "--defense-option", "betta=1"], "betta"),
        (["--defense", "dp", "--defense-option", "epsilon"], "KEY=VALUE"),
        (["--probe", "fedsgx"], "probe must be one of"),
        (["--mia-every", "0"], "every must be"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str | None) -> None:
    import torch

    if args == ["--device", "cuda"]:
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        message = "no CUDA GPU"
    result = runner.invoke(app, ["simulate", "--run-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "runs").exists()


def test_unreadable_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("alpha = [unclosed")
    result = runner.invoke(app, ["simulate", "--config", str(bad)])
    assert result.exit_code == 2 and "fix the TOML" in result.output
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("alpah = 0.1\n")
    result = runner.invoke(app, ["simulate", "--config", str(unknown)])
    assert result.exit_code == 2 and "unknown key(s) alpah" in result.output


def test_help_explains_every_option() -> None:
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--clients", "--alpha", "--rounds", "--local-epochs", "--batch-size", "--lr", "--dataset",
                   "--data-dir", "--partition", "--model", "--seed", "--device", "--client-cpus", "--client-gpus",
                   "--run-dir", "--name", "--config"):
        assert option in result.output
