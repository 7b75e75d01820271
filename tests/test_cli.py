"""The command line: help generated from the option schema (defaults visible, panels), one
meaning per flag, `--version`, `runs`/`report`, the simulate terminal, and bad input as one line
with exit code 2 that writes nothing — for every option of every command."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import fedls
from fedls.cli import app
from fedls.cli.options import field_panel
from fedls.cli.simulate import FLAGS, MIA_EVERY_HELP, SECTION_FLAGS, RoundLine
from fedls.cli.tables import report_table
from fedls.config import RunConfig
from fedls.errors import FedlsError
from fedls.provenance import provenance
from fedls.run_dir import RunDirectory
from fedls.studies.reports import report_run

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one line per option in rendered help


def commands(group: click.Group | None = None, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of the CLI with its path (``("attack", "model")``)."""
    root = group if group is not None else typer.main.get_command(app)
    assert isinstance(root, click.Group)
    for name, command in root.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = dict(commands())


def render_help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def option_lines(help_text: str) -> dict[str, tuple[str, str]]:
    """``{"--clients": (panel, line)}`` from rendered rich help."""
    found, panel = {}, ""
    for line in help_text.splitlines():
        if match := re.match(r"╭─ (.+?) ─", line):
            panel = match.group(1)
        elif match := re.match(r"│ (?:\*\s+)?(--\S+)", line):
            for name in match.group(1).split(","):
                found[name] = (panel, line)
    return found


# -- help -------------------------------------------------------------------------------------
def test_simulate_help_shows_every_run_config_default_in_its_declared_panel() -> None:
    lines = option_lines(render_help(("simulate",)))
    checked = 0
    for name, info in RunConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name in ("defense_options", "central_dp", "gradient_attack", "model_attack"):
            continue  # tables: --defense-option, --central-dp-*, the attack panels
        panel, line = lines[flag]
        assert panel == field_panel(info), flag
        assert " ".join((info.description or "").split()[:4]) in line, flag
        if info.default is not None:
            shown = str(info.default)
            assert f"[default: {shown}]" in line, f"{flag}: {line}"
            checked += 1
    assert checked >= 20
    for flag in ("--clients", "--alpha", "--rounds", "--defense", "--defense-option", "--mia-every", "--attacks", "--threat",
                 "--private-cap", "--ray-address", "--config", "--recon-steps", "--mia-classes", "--central-dp-noise"):
        assert flag in lines, flag
    assert "[default: 10]" in lines["--clients"][1] and "[default: all]" in lines["--attacks"][1]
    assert "none|gradient|model|all" in lines["--attacks"][1]
    assert lines["--threat"][0] == "Gradient attack" and lines["--mia-every"][0] == "Model inversion"


def test_section_flags_say_what_their_schema_declares() -> None:
    from fedls.federation.observers.model_inversion import ModelAttackOptions

    lines = option_lines(render_help(("simulate",)))
    for flag in SECTION_FLAGS:
        info = flag.schema.model_fields[flag.field]
        line = lines[(flag.decls or ("--" + flag.param.replace("_", "-"),))[0]][1]
        assert (info.description or "")[:30].lower() in line.lower(), flag.param
        assert f"[default: {info.default}]" in line, flag.param
    # written out in simulate.py to keep the attack observers out of the CLI's start-up
    every = ModelAttackOptions.model_fields["every"]
    assert MIA_EVERY_HELP.startswith((every.description or "")[:1].upper() + (every.description or "")[1:])
    assert f"[default: {every.default}]" in lines["--mia-every"][1]


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_help_shows_its_defaults(path: tuple[str, ...]) -> None:
    """Hand-written `[default: …]` survives rich markup and Typer's own defaults are shown."""
    lines = option_lines(render_help(path))
    for param in COMMANDS[path].params:
        if not isinstance(param, click.Option) or param.hidden or param.name == "help":
            continue
        flag = next(d for d in param.opts if d.startswith("--"))
        line = lines[flag][1]
        written = re.search(r"\\\[default: ([^\]]+)\]", param.help or "")
        if written:
            assert "[default: " + written.group(1).replace("\\[", "[")[:20] in line, f"{' '.join(path)} {flag}: {line}"
        elif param.default is not None and not param.is_flag and not param.multiple:
            assert "[default: " in line, f"{' '.join(path)} {flag} hides its default: {line}"


def test_one_meaning_per_option_name() -> None:
    """Flags that were overloaded (`--samples`, `--steps`) are gone; the specific names exist."""
    names = {path: {d for p in c.params for d in getattr(p, "opts", [])} for path, c in COMMANDS.items()}
    everywhere = set().union(*names.values())
    assert not {"--samples", "--steps", "--checkpoint", "--pool", "--seeds-count"} & (everywhere - names[("compare",)])
    assert "--sample-indices" in names[("attack", "gradient")]
    assert {"--images-per-class", "--attack-steps", "--prior-steps", "--pool-size"} <= names[("attack", "model")]
    assert {"--prior-steps", "--prior-seed"} <= names[("prior", "train")]
    assert {"--attack-steps", "--pool-size"} <= names[("stages",)]
    assert "--test-samples" in names[("robustness",)] and "--num-seeds" in names[("toy",)]
    # the run to analyse is an argument everywhere
    for path in (("attack", "model"), ("attack", "gradient"), ("embeddings",), ("robustness",), ("stages",), ("report",)):
        assert any(isinstance(p, click.Argument) for p in COMMANDS[path].params), path


def test_version_prints_version_and_commit() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fedls {fedls.__version__} (git commit {provenance()['git_commit']})"


# -- flags reach the config -------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """Stop `fedls simulate` where the config is complete, before anything is prepared or written."""
    import fedls.federation.simulation as simulation

    seen: list[RunConfig] = []

    def stop(config: RunConfig) -> None:
        seen.append(config)
        raise FedlsError("stopped by the test")

    monkeypatch.setattr(simulation, "prepare", stop)
    return seen


@pytest.mark.parametrize("attacks", ["none", "gradient", "model", "all"])
def test_attacks_flag_reaches_the_config(captured: list[RunConfig], attacks: str) -> None:
    result = runner.invoke(app, ["simulate", "--attacks", attacks])
    assert result.exit_code == 2 and "stopped by the test" in result.output
    assert captured[-1].attacks == attacks


def test_attacks_default_to_all(captured: list[RunConfig]) -> None:
    runner.invoke(app, ["simulate"])
    assert captured[-1].attacks == "all"


def test_section_flags_merge_into_a_config_file_key_by_key(tmp_path: Path, captured: list[RunConfig]) -> None:
    file = tmp_path / "run.toml"
    file.write_text('rounds = 4\n[model_attack]\nevery = 2\n[model_attack.ppa]\npool_size = 100\n'
                    '[gradient_attack]\nclients = 3\n')
    result = runner.invoke(app, [
        "simulate", "--config", str(file), "--threat", "malicious-fedsgd", "--mia-classes", "0,3", "--mia-samples", "2",
        "--mia-option", "prior.steps=7", "--gradient-option", "tv_weight=0.5", "--private-cap", "20", "--clients", "3",
        "--central-dp-noise", "0.5",
    ])
    assert result.exit_code == 2, result.output
    cfg = captured[-1]
    assert cfg.rounds == 4 and cfg.clients == 3 and cfg.private_cap == 20
    assert cfg.gradient_attack == {"clients": 3, "threat": "malicious-fedsgd", "tv_weight": 0.5}
    assert cfg.model_attack == {
        "every": 2,
        "ppa": {"pool_size": 100, "classes": [0, 3], "samples_per_class": 2},
        "prior": {"steps": 7},
    }
    assert cfg.central_dp == {"noise_multiplier": 0.5}


# -- bad input --------------------------------------------------------------------------------
def assert_one_line_exit_2(result: Any, where: Path, needle: str | None = None) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "╭" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(result.output.strip().splitlines()) == 1, result.output
    if needle is not None:
        assert needle in result.output, result.output
    assert not any(where.iterdir()), f"wrote {list(where.iterdir())}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "1.5"], "Invalid value for '--alpha': 1.5 is not in the range"),
        (["--alpha", "nan"], "alpha"),
        (["--clients", "0"], "Invalid value for '--clients': 0 is not in the range x>=1"),
        (["--rounds", "0"], "rounds"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--model", "vit"], "unknown model 'vit'"),
        (["--partition", "zipf"], "unknown partition 'zipf'"),
        (["--dataset", "mnist", "--data-dir", "/definitely/missing"], "no mnist data found"),
        (["--client-cpus", "4096"], "does not fit this machine"),
        (["--device", "cuda"], None),  # fails on machines without CUDA only
        (["--config", "/definitely/missing.toml"], "does not exist"),
        (["--defense", "mid", "--defense-option", "betta=1"], "betta"),
        (["--defense", "dp", "--defense-option", "epsilon"], "KEY=VALUE"),
        (["--defense-option", "beta=0.01"], "without a defense"),
        (["--threat", "fedsgx"], "'fedsgx' is not one of 'honest'"),
        (["--attacks", "some"], "Invalid value for '--attacks'"),
        (["--mia-every", "0"], "every"),
        (["--mia-classes", "99"], "class"),
        (["--mia-classes", "a,b"], "--mia-classes takes all"),
        (["--mia-option", "ppa"], "KEY=VALUE"),
        (["--gradient-option", "bogus=1"], "bogus"),
        (["--clients", "many"], "'many' is not a valid integer"),
        (["--no-such-flag"], "No such option"),
    ],
)
def test_bad_simulate_input_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                               message: str | None) -> None:
    import torch

    if args == ["--device", "cuda"]:
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        message = "no CUDA GPU"
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["simulate", "--run-dir", str(tmp_path / "runs"), *args])
    assert_one_line_exit_2(result, tmp_path, message)


def test_unreadable_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("alpha = [unclosed")
    result = runner.invoke(app, ["simulate", "--config", str(bad)])
    assert result.exit_code == 2 and "fix the TOML" in result.output
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("alpah = 0.1\n")
    result = runner.invoke(app, ["simulate", "--config", str(unknown)])
    assert result.exit_code == 2 and "alpah: unknown option" in result.output


def out_of_range(metadata: list[Any]) -> str | None:
    """A value just outside a field's declared range (None when it has none)."""
    for rule in metadata:
        for attr, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            bound = getattr(rule, attr, None)
            if bound is not None:
                return str(bound + step)
    return None


SIMULATE_RANGES = [
    (flag.decls[0] if flag.decls else "--" + flag.param.replace("_", "-"), value)
    for flag in FLAGS
    if (value := out_of_range(flag.schema.model_fields[flag.field].metadata)) is not None
]


@pytest.mark.parametrize(("flag", "value"), SIMULATE_RANGES, ids=[f"{f}={v}" for f, v in SIMULATE_RANGES])
def test_every_declared_range_of_simulate_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["simulate", flag, value])
    assert_one_line_exit_2(result, tmp_path)


def wrong_type_cases() -> Iterator[tuple[tuple[str, ...], str, str]]:
    """(command, flag, value) for every option of every command that takes a number or a choice."""
    for path, command in COMMANDS.items():
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            flag = next(d for d in param.opts if d.startswith("--"))
            if isinstance(param.type, click.Choice):
                yield path, flag, "not-a-choice"
            elif isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield path, flag, "x"
            if isinstance(param.type, click.types.FloatParamType):
                yield path, flag, "nan"
                yield path, flag, "-inf"
            if isinstance(param.type, (click.IntRange, click.FloatRange)) and param.type.min is not None:
                yield path, flag, str(param.type.min - 1)


WRONG_TYPES = list(wrong_type_cases())


def test_the_bad_input_battery_covers_every_command() -> None:
    covered = {path for path, _, _ in WRONG_TYPES}
    # the only commands without number or choice options (their bad folders are tested with them)
    assert covered == set(COMMANDS) - {("runs",), ("report",), ("contrast",)}
    assert len(WRONG_TYPES) > 60


@pytest.mark.parametrize(("path", "flag", "value"), WRONG_TYPES, ids=[f"{' '.join(p)} {f}={v}" for p, f, v in WRONG_TYPES])
def test_wrong_type_or_range_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...],
                                                flag: str, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    arguments = [tmp_path.name for p in COMMANDS[path].params if isinstance(p, click.Argument) and p.required]
    result = runner.invoke(app, [*path, flag, value, *arguments])
    assert_one_line_exit_2(result, tmp_path, flag)


def test_typer_usage_errors_are_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line_exit_2(runner.invoke(app, ["attack", "model"]), tmp_path, "Missing argument 'RUN'")
    assert_one_line_exit_2(runner.invoke(app, ["nonsense"]), tmp_path, "No such command")
    assert_one_line_exit_2(runner.invoke(app, ["simulate", "--clients"]), tmp_path, "requires an argument")


# -- runs and report --------------------------------------------------------------------------
def write_run(root: Path, name: str, attacks: str = "all") -> RunDirectory:
    """A tiny finished run as the simulator leaves it."""
    run = RunDirectory.create(RunConfig.parse({"run_dir": str(root), "name": name, "rounds": 2, "attacks": attacks}, "test"))
    leak = attacks != "none"
    records: list[dict[str, Any]] = [
        {"round": 0, "global/accuracy": 0.1},
        {"round": 1, "global/accuracy": 0.7, **({"leakage/gradient/label_count_accuracy": 1.0} if leak else {}),
         "per_client": {"gradient/count_exact": {"0": 1.0}}},
        {"round": 2, "global/accuracy": 0.9, **({"leakage/gradient/label_count_accuracy": 0.8,
                                                "leakage/model_inversion/acc1": 0.6,
                                                "leakage/model_inversion/baseline_acc1": 0.1} if leak else {})},
    ]
    for record in records:
        run.append_metrics(record)
    mode = "honest" if leak else "off"
    run.write_summary({"status": "complete", "rounds_completed": 2, "threat_mode": {"gradient": mode, "model": mode},
                       "attacks": ["gradient_attack", "model_attack"] if leak else [], "fedls_version": fedls.__version__,
                       "git_commit": "abc"})
    return run


def test_runs_lists_status_and_headlines(tmp_path: Path) -> None:
    write_run(tmp_path, "attacked")
    write_run(tmp_path, "quiet", attacks="none")
    result = runner.invoke(app, ["runs", str(tmp_path)], env=WIDE)
    assert result.exit_code == 0, result.output
    attacked = next(line for line in result.output.splitlines() if "attacked" in line)
    assert "complete" in attacked and "0.9" in attacked and "0.8" in attacked and "0.6" in attacked and "2/2" in attacked
    quiet = next(line for line in result.output.splitlines() if "quiet" in line)
    assert "none" in quiet and quiet.count("—") == 2
    data = json.loads(runner.invoke(app, ["runs", str(tmp_path), "--json"]).output)
    assert [item["path"] for item in data] == ["attacked", "quiet"] and data[0]["mi_acc1"] == 0.6


def test_runs_on_a_missing_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["runs", str(tmp_path / "nope")])
    assert_one_line_exit_2(result, tmp_path, "does not exist")


def test_report_markdown_and_json(tmp_path: Path) -> None:
    run = write_run(tmp_path, "attacked")
    result = runner.invoke(app, ["report", str(run.path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Run attacked") and "## Gradient leakage" in result.output
    assert "| attack Acc@1 (judge) | ↑ | 0.6 | 2 |" in result.output and "0.1 (prior alone)" in result.output
    data = json.loads(runner.invoke(app, ["report", str(run.path), "--json"]).output)
    assert data["status"] == "complete" and data["threat_mode"]["gradient"] == "honest"


def test_report_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    assert_one_line_exit_2(runner.invoke(app, ["report", str(tmp_path)]), tmp_path, "not a fedls run directory")


# -- the simulate terminal --------------------------------------------------------------------
def test_progress_line_shows_leakage_beside_accuracy() -> None:
    line = RoundLine(RunConfig())
    first = line(1, {"global/accuracy": 0.5, "leakage/gradient/label_count_accuracy": 1.0, "train/alpha": 0.0})
    assert first.startswith("acc 0.500") and "label counts 1.00" in first and "MI Acc@1 —" in first
    line(2, {"global/accuracy": 0.6, "leakage/model_inversion/acc1": 0.42})
    third = line(3, {"global/accuracy": 0.7, "leakage/gradient/label_count_accuracy": 0.5})
    assert "MI Acc@1 0.42 (r2)" in third and "label counts 0.50" in third  # the latest inversion, with its round
    quiet = RoundLine(RunConfig(attacks="none"))(1, {"global/accuracy": 0.5})
    assert "label" not in quiet and "MI" not in quiet


def test_final_table_is_grouped_without_per_client_rows(tmp_path: Path) -> None:
    run = write_run(tmp_path, "attacked")
    console = Console(record=True, width=200)
    console.print(report_table(report_run(run.path), "run attacked"))
    text = console.export_text()
    assert text.index("Utility") < text.index("Gradient leakage") < text.index("Model-inversion leakage")
    assert "per_client" not in text and "count_exact" not in text
    acc1 = next(line for line in text.splitlines() if "attack Acc@1" in line)
    assert "↑" in acc1 and "0.1 (prior alone)" in acc1
    assert "worse for privacy" in text
