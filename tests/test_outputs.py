from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedls.cli import app
from fedls.errors import ConfigError
from fedls.outputs import prepare_output_dir


def test_default_folders_are_numbered_and_explicit_ones_must_be_new(tmp_path: Path) -> None:
    default = tmp_path / "report"
    first = prepare_output_dir(None, default)
    (first / "a.json").write_text("{}")
    second = prepare_output_dir(None, default)
    assert (first, second) == (default, tmp_path / "report-1")
    assert prepare_output_dir(tmp_path / "empty", default).is_dir()
    with pytest.raises(ConfigError, match="not empty"):
        prepare_output_dir(first, default)
    assert (first / "a.json").read_text() == "{}"


def test_gradient_attack_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "gradient_attack.json").write_text("keep me")
    result = CliRunner().invoke(app, ["attack", "gradient", "--sample-indices", "0", "--recon-steps", "0", "--out", str(out)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (out / "gradient_attack.json").read_text() == "keep me"
