"""`fedls simulate`: parse flags (over an optional TOML file) and run one federated experiment.

The flags are generated from the option schema: every scalar field of
:class:`~fedls.config.RunConfig` is a flag of the same name (help, default, choices and help
panel from its declaration), plus the few attack and defense options a user changes most;
everything else of a section is reachable through ``--gradient-option``, ``--mia-option``,
``--defense-option`` or a ``--config`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.attacks.model.config import PPAOptions
from fedls.cli.app import app, console, err_console, guarded, setup_logging
from fedls.cli.attack_model import parse_classes, parse_extra
from fedls.cli.options import (
    Flag,
    extra_parameter,
    field_panel,
    nest,
    schema_flags,
    shown_default,
    with_signature,
)
from fedls.cli.tables import report_table
from fedls.config import CentralDPOptions, RunConfig, deep_merge, parse_assignment

Opt = typer.Option
G_LEAK = "leakage/gradient/"
MI_LEAK = "leakage/model_inversion/"
# Panels in the order a newcomer reads them (the schema declares each field's panel).
PANELS = (
    "Training", "Label smoothing", "Data", "Defense", "Attacks", "Gradient attack", "Model inversion", "Execution", "Output",
)
# `ModelAttackOptions.every`: written out here because importing its module pulls in every
# attack observer (torchmetrics, matplotlib: seconds on each start of the CLI);
# tests/test_cli.py checks that it says what the declaration says.
MIA_EVERY_HELP = f"Attack the global model every k rounds (and at the last round). {shown_default('5')}"

CENTRAL_DP = "Central DP (off unless set; protects the released model, not the clients): "
SECTION_FLAGS: tuple[Flag, ...] = (
    Flag("central_dp_noise", CentralDPOptions, "noise_multiplier", ("central_dp",), ("--central-dp-noise",), "Defense",
         prefix=CENTRAL_DP),
    Flag("central_dp_clip", CentralDPOptions, "clipping_norm", ("central_dp",), ("--central-dp-clip",), "Defense",
         prefix=CENTRAL_DP),
    Flag("threat", GradientAttackOptions, "threat", ("gradient_attack",), ("--threat",), "Gradient attack"),
    Flag("gradient_every", GradientAttackOptions, "every", ("gradient_attack",), ("--gradient-every",), "Gradient attack"),
    Flag("attack_clients", GradientAttackOptions, "clients", ("gradient_attack",), ("--attack-clients",), "Gradient attack"),
    Flag("probe_batch", GradientAttackOptions, "probe_batch", ("gradient_attack",), ("--probe-batch",), "Gradient attack"),
    Flag("mixup", GradientAttackOptions, "mixup", ("gradient_attack",), ("--mixup",), "Gradient attack"),
    Flag("recon_steps", GradientAttackOptions, "recon_steps", ("gradient_attack",), ("--recon-steps",), "Gradient attack"),
    Flag("mia_images_per_class", PPAOptions, "samples_per_class", ("model_attack", "ppa"),
         ("--mia-images-per-class", "--mia-samples"), "Model inversion"),
    Flag("mia_steps", PPAOptions, "steps", ("model_attack", "ppa"), ("--mia-steps",), "Model inversion"),
)
CONFIG_FLAGS: tuple[Flag, ...] = tuple(schema_flags(RunConfig))
FLAGS = CONFIG_FLAGS + SECTION_FLAGS


def _panel_rank(flag: Flag) -> int:
    panel = flag.panel or field_panel(flag.schema.model_fields[flag.field])
    return PANELS.index(panel) if panel in PANELS else len(PANELS)


def _parameters() -> list[Any]:
    special = [
        extra_parameter("config", Annotated[Optional[Path], Opt(
            "--config", help="TOML file with any of these options (flags override it, key by key within a table).")]),
        extra_parameter("verbose", Annotated[bool, Opt("--verbose", "-v", help="Show Flower's and fedls' logs.")], False),
        extra_parameter("defense_option", Annotated[Optional[list[str]], Opt(
            "--defense-option", rich_help_panel="Defense",
            help="Option of the chosen defense as KEY=VALUE, repeatable, e.g. beta=0.01 or epsilon=8 (docs/defenses.md).")]),
        extra_parameter("gradient_option", Annotated[Optional[list[str]], Opt(
            "--gradient-option", rich_help_panel="Gradient attack",
            help="Any other gradient_attack option as KEY=VALUE, repeatable, e.g. tv_weight=0.05.")]),
        extra_parameter("mia_every", Annotated[Optional[int], Opt(
            "--mia-every", rich_help_panel="Model inversion", help=MIA_EVERY_HELP)]),
        extra_parameter("mia_classes", Annotated[Optional[str], Opt(
            "--mia-classes", rich_help_panel="Model inversion",
            help=f"Attacked classes: all, a count (seeded random subset) or a list like 0,3,7. {shown_default('all')}")]),
        extra_parameter("mia_option", Annotated[Optional[list[str]], Opt(
            "--mia-option", rich_help_panel="Model inversion",
            help="Any other model_attack option as SECTION.KEY=VALUE, repeatable, e.g. ppa.pool_size=500 or prior.steps=800.")]),
    ]
    generated = [flag.parameter() for flag in sorted(FLAGS, key=_panel_rank)]
    return special[:2] + generated + special[2:]


def flag_table(flags: dict[str, Any]) -> dict[str, Any]:
    """The nested run-config table of the flags that were given (None = not given)."""
    table = nest(FLAGS, flags)
    if flags.get("defense_option"):
        table["defense_options"] = dict(parse_assignment(p, "--defense-option beta=0.01") for p in flags["defense_option"])
    if flags.get("gradient_option"):
        extra = dict(parse_assignment(p, "--gradient-option tv_weight=0.05") for p in flags["gradient_option"])
        table["gradient_attack"] = {**extra, **table.get("gradient_attack", {})}
    model: dict[str, Any] = parse_extra(flags.get("mia_option") or [], "--mia-option ppa.pool_size=500")
    if flags.get("mia_every") is not None:
        model["every"] = flags["mia_every"]
    if flags.get("mia_classes") is not None:
        model.setdefault("ppa", {})["classes"] = parse_classes(flags["mia_classes"], "--mia-classes")
    table["model_attack"] = deep_merge(model, table.get("model_attack", {}))
    return {key: value for key, value in table.items() if value != {}}


def build_config(config_file: Path | None, flags: dict[str, Any]) -> RunConfig:
    """TOML file (if any) first, then every flag the user actually passed."""
    base = RunConfig.from_toml(config_file) if config_file is not None else RunConfig()
    return RunConfig.parse(deep_merge(base.model_dump(), flag_table(flags)), "flags").check_registries()


def simulate(**flags: Any) -> None:
    """Run one federated experiment while a curious server measures what leaks.

    Clients train with label smoothing (or another defense) in a Flower simulation; the server
    recovers label counts from every client update and inverts the global model every k rounds
    (--attacks none switches both off)."""
    from fedls.federation.observers.model_inversion import parse_model_attack
    from fedls.federation.simulation import RunInterrupted, RunStopped, prepare
    from fedls.federation.simulation import simulate as run
    from fedls.studies.reports import attacks_sentence, report_run, threat_modes

    verbose = bool(flags.pop("verbose"))
    setup_logging(verbose)
    cfg = build_config(flags.pop("config"), flags)
    prepared = prepare(cfg)
    console.print(f"[bold]fedls simulate[/] {cfg.clients} clients × {cfg.rounds} rounds, α={cfg.alpha:g}, "
                  f"defense={cfg.defense}, dataset={cfg.dataset}", highlight=False)
    sentence = attacks_sentence(threat_modes(cfg))
    if cfg.model_attack_on():
        sentence += f", every {parse_model_attack(cfg.model_attack).every} rounds and at the last round"
    console.print(sentence + ("" if cfg.attacks != "none" else " (drop --attacks none to measure it)"), highlight=False)
    progress = Progress(
        TextColumn("[bold blue]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )
    task = progress.add_task("starting Flower/Ray…", total=cfg.rounds, label="rounds")
    progress_line = RoundLine(cfg)

    def on_round(server_round: int, record: dict[str, Any]) -> None:
        progress.update(task, completed=server_round, description=progress_line(server_round, record))

    first_use: dict[str, TaskID] = {}

    def on_first_use(name: str, done: int, total: int) -> None:
        """Training the model-inversion prior and judge (first use only; cached afterwards)."""
        if name not in first_use:
            first_use[name] = progress.add_task(f"training the {name} (first use, then cached)", total=total, label=name)
        progress.update(first_use[name], completed=done)

    try:
        with progress:
            result = run(prepared, on_round=on_round, verbose=verbose, progress=on_first_use)
    except RunInterrupted as exc:
        err_console.print(f"{exc} (summary.json says 'interrupted')", highlight=False)
        raise typer.Exit(code=exc.exit_code if isinstance(exc, RunStopped) else 130) from None
    summary = result.summary
    title = f"run {result.run.path.name}: {summary['status']}, {summary['rounds_completed']} rounds in {summary['seconds']:.0f} s"
    console.print(report_table(report_run(result.run.path), title))
    if cfg.attacks == "none":
        console.print("no leakage measured: the run had --attacks none", highlight=False)
    console.print(f"run directory: {result.run.path}\nreport:        fedls report {result.run.path}\n"
                  f"TensorBoard:   tensorboard --logdir {result.run.path.parent}", highlight=False)


class RoundLine:
    """The progress bar's text: accuracy beside the leakage of the latest round that measured it."""

    def __init__(self, config: RunConfig) -> None:
        self.gradient = config.gradient_attack_on()
        self.model = config.model_attack_on()
        self.mi: tuple[int, float] | None = None

    def __call__(self, server_round: int, record: dict[str, Any]) -> str:
        parts = [f"acc {record.get('global/accuracy', float('nan')):.3f}"]
        if self.gradient:
            labels = record.get(f"{G_LEAK}label_count_accuracy")
            parts.append("label counts " + ("—" if labels is None else f"{labels:.2f}"))
            psnr = record.get(f"{G_LEAK}recon_psnr")
            if psnr is not None:
                parts.append(f"PSNR {psnr:.1f} dB")
        if self.model:
            acc1 = record.get(f"{MI_LEAK}acc1")
            if acc1 is not None:
                self.mi = (server_round, float(acc1))
            parts.append("MI Acc@1 " + ("—" if self.mi is None else f"{self.mi[1]:.2f} (r{self.mi[0]})"))
        parts.append(f"α {record.get('train/alpha', 0.0):+.3f}")
        return "  ".join(parts)


app.command(name="simulate")(guarded(with_signature(simulate, _parameters())))
