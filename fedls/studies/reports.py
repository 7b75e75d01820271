"""Read runs back: headline utility and leakage of one run against its baselines, and a list of runs.

Behind ``fedls runs [DIR]``, ``fedls report RUN`` and the final table of ``fedls simulate``.
Everything here reads a run directory (``config.toml``, ``metrics.jsonl``, ``summary.json``)
and nothing else, so it works on finished, interrupted, failed and still-running runs.
:func:`read_run_files` is the one reader of ``metrics.jsonl`` and ``summary.json`` for reports
and comparisons: a last line cut off by a crash is skipped, an empty or corrupt summary makes
the run ``damaged``, and neither raises.

The headline rows are grouped — utility, gradient leakage, model-inversion leakage — and each
leakage row says which direction is worse for privacy (↑ = a larger value means the curious
server learned more) next to the baseline that makes the number meaningful: the round-0 model
for utility, the even-spread guess for label counts, the prior alone for model inversion, the
hard-label and mean-image answers for image reconstruction. Per-client values stay in
``metrics.jsonl`` (``per_client``); reports show only the means over attacked clients.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedls.config import RunConfig
from fedls.errors import CheckpointError, ConfigError
from fedls.outputs import read_json_lines, read_json_object
from fedls.run_dir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, RunDirectory

log = logging.getLogger(__name__)

UTILITY = "Utility"
GRADIENT = "Gradient leakage"
MODEL_INVERSION = "Model-inversion leakage"
COST = "Cost per round (seconds)"
GROUPS = (UTILITY, GRADIENT, MODEL_INVERSION, COST)
# what the arrow of a row means, per group
ARROW_MEANING = {
    UTILITY: "arrow = the direction that is better for the model",
    GRADIENT: "arrow = the direction that is worse for privacy (the server learned more)",
    MODEL_INVERSION: "arrow = the direction that is worse for privacy (the server learned more)",
    COST: "wall time on this run's machine; the mean is over the rounds in which the step ran",
}
ROUND_0 = "round 0"  # baseline: the same tag measured on the initial (untrained) global model

Direction = Literal["up", "down"]
ARROWS: dict[Direction | None, str] = {"up": "↑", "down": "↓", None: ""}

G = "leakage/gradient/"
MI = "leakage/model_inversion/"


@dataclass(frozen=True)
class Headline:
    """One headline metric: its tag in ``metrics.jsonl``, how to read it, and its baseline."""

    tag: str
    label: str
    group: str
    direction: Direction | None
    baseline: str | None = None  # a tag of the same record, or ROUND_0
    baseline_label: str = ""
    interval: tuple[str, str] | None = None  # tags of a 95 % interval around the value


HEADLINES: tuple[Headline, ...] = (
    Headline("global/accuracy", "test accuracy", UTILITY, "up", ROUND_0, "round 0"),
    Headline("global/loss", "test loss", UTILITY, "down", ROUND_0, "round 0"),
    Headline("global/ece", "calibration error (ECE)", UTILITY, "down", ROUND_0, "round 0"),
    Headline("global/mean_confidence", "mean confidence", UTILITY, None, ROUND_0, "round 0"),
    Headline("global/mean_logit_norm", "mean logit norm", UTILITY, None, ROUND_0, "round 0"),
    Headline(f"{G}label_count_accuracy", "label counts recovered exactly", GRADIENT, "up"),
    Headline(f"{G}label_count_mae", "label-count error per class", GRADIENT, "down",
             f"{G}label_count_mae_chance", "even-spread guess"),
    Headline(f"{G}alpha_error", "error of the recovered α", GRADIENT, "down"),
    Headline(f"{G}probe_label_success", "probe label recovered", GRADIENT, "up"),
    Headline(f"{G}recon_psnr", "reconstruction PSNR (soft labels), dB", GRADIENT, "up",
             f"{G}recon_psnr_mean_image", "mean training image"),
    Headline(f"{G}recon_psnr_hard_label", "reconstruction PSNR (hard labels), dB", GRADIENT, "up",
             f"{G}recon_psnr_mean_image", "mean training image"),
    Headline(f"{MI}acc1", "attack Acc@1 (judge)", MODEL_INVERSION, "up", f"{MI}baseline_acc1", "prior alone",
             (f"{MI}acc1_low", f"{MI}acc1_high")),
    Headline(f"{MI}lift", "Acc@1 lift over the prior", MODEL_INVERSION, "up"),
    Headline(f"{MI}judge_accuracy", "judge's test accuracy", MODEL_INVERSION, None),
    Headline("time/round_seconds", "whole round (training, transport, attacks on updates)", COST, None),
    Headline("time/attack_gradient_s", "gradient attack on all updates", COST, None),
    Headline("time/attack_model_s", "model inversion of the global model", COST, None),
)
# the three numbers `fedls runs` shows per run
LIST_COLUMNS = {"accuracy": "global/accuracy", "label_count_accuracy": f"{G}label_count_accuracy", "mi_acc1": f"{MI}acc1"}


@dataclass(frozen=True)
class ReportRow:
    group: str
    tag: str
    label: str
    arrow: str
    value: float
    round: int
    mean: float | None  # mean over the rounds that measured it (leakage only)
    rounds_measured: int
    baseline: float | None
    baseline_label: str
    interval: tuple[float, float] | None


@dataclass(frozen=True)
class RunReport:
    """One run's headline rows and what produced them."""

    path: str
    name: str
    status: str
    rounds_completed: int
    rounds_planned: int
    dataset: str
    alpha: float
    defense: str
    attacks: str
    threat_mode: dict[str, str]
    fedls_version: str
    git_commit: str
    rows: list[ReportRow] = field(default_factory=list)

    def group(self, name: str) -> list[ReportRow]:
        return [row for row in self.rows if row.group == name]

    def value(self, tag: str) -> float | None:
        return next((row.value for row in self.rows if row.tag == tag), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunListing:
    """One line of ``fedls runs``."""

    path: str
    status: str
    rounds: str
    dataset: str
    alpha: float | None
    defense: str
    attacks: str
    accuracy: float | None
    label_count_accuracy: float | None
    mi_acc1: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int:
    """A round count from a record or summary; 0 for anything that is not a number."""
    number = _number(value)
    return int(number) if number is not None else 0


def _latest(records: Sequence[Mapping[str, Any]], tag: str) -> Mapping[str, Any] | None:
    """The last record that measured ``tag`` (attacks need not run every round)."""
    return next((r for r in reversed(records) if _number(r.get(tag)) is not None), None)


def headline_rows(records: Sequence[Mapping[str, Any]], headlines: Sequence[Headline] = HEADLINES) -> list[ReportRow]:
    """The headline rows present in ``records`` (metrics.jsonl order, round 0 first); metrics
    that the run never measured are left out rather than shown as zero."""
    round0 = next((r for r in records if r.get("round") == 0), None)
    rows = []
    for h in headlines:
        latest = _latest(records, h.tag)
        if latest is None:
            continue
        measured = [v for r in records if _int(r.get("round")) > 0 and (v := _number(r.get(h.tag))) is not None]
        if h.baseline == ROUND_0:
            baseline = _number(round0.get(h.tag)) if round0 is not None and round0 is not latest else None
        else:
            baseline = _number(latest.get(h.baseline)) if h.baseline else None
        interval = None
        if h.interval is not None:
            low, high = (_number(latest.get(t)) for t in h.interval)
            interval = (low, high) if low is not None and high is not None else None
        rows.append(ReportRow(
            group=h.group, tag=h.tag, label=h.label, arrow=ARROWS[h.direction], value=float(latest[h.tag]),
            round=_int(latest.get("round")),
            mean=(sum(measured) / len(measured)) if h.group != UTILITY and measured else None,
            rounds_measured=len(measured), baseline=baseline, baseline_label=h.baseline_label if baseline is not None else "",
            interval=interval,
        ))
    return rows


def threat_modes(config: RunConfig) -> dict[str, str]:
    """``{"gradient": honest | malicious-... | off, "model": honest | off}`` of a run config."""
    gradient = str(config.gradient_attack.get("threat", "honest")) if config.gradient_attack_on() else "off"
    return {"gradient": gradient, "model": "honest" if config.model_attack_on() else "off"}


def _attack_modes(summary: Mapping[str, Any] | None, config: RunConfig) -> tuple[str, dict[str, str]]:
    """Which attacks ran and in which threat mode: the summary's word, else the config's."""
    if summary and isinstance(summary.get("threat_mode"), Mapping):
        modes = {str(k): str(v) for k, v in summary["threat_mode"].items()}
    else:
        modes = threat_modes(config)
    on = [kind for kind in ("gradient", "model") if modes.get(kind, "off") != "off"]
    return ("all" if len(on) == 2 else on[0] if on else "none"), modes


def _open(path: Path) -> RunDirectory:
    if not path.exists():
        raise ConfigError(f"run directory {path} does not exist; pass a folder under runs/ (see `fedls runs`)")
    if not path.is_dir():
        raise ConfigError(f"{path} is a file; pass a run directory (a folder with {CONFIG_FILE})")
    return RunDirectory.open(path)


@dataclass(frozen=True)
class RunFiles:
    """A run directory's ``metrics.jsonl`` and ``summary.json`` as far as they could be read."""

    records: list[dict[str, Any]]
    summary: dict[str, Any] | None  # None: not written (yet), or damaged (summary_problem)
    record_problems: list[str] = field(default_factory=list)  # lines of metrics.jsonl that were skipped
    summary_problem: str | None = None  # summary.json exists but is empty, not JSON or not an object

    @property
    def problems(self) -> list[str]:
        return [*self.record_problems, *([self.summary_problem] if self.summary_problem else [])]

    @property
    def complete(self) -> bool:
        """Finished and intact: summary.json says ``complete`` and no record was lost."""
        return not self.problems and self.summary is not None and self.summary.get("status") == "complete"


def read_run_files(path: Path) -> RunFiles:
    """The records and summary of the run directory at ``path``; damage (what a crash or a full
    disk leaves) is described in the result, never raised."""
    lines = read_json_lines(path / METRICS_FILE)
    summary, problem = read_json_object(path / SUMMARY_FILE)
    return RunFiles(lines.records, summary, lines.problems, problem)


def run_status(summary: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]], damage: str | None = None) -> str:
    """``complete``/``interrupted``/``failed`` from summary.json; ``damaged (...)`` when
    summary.json cannot be read; a run without one is still running or was killed before it
    could write it."""
    if damage is not None:
        return f"damaged ({damage})"
    if summary is not None:
        return str(summary.get("status", "unknown"))
    return "running or killed" if records else "not started"


def report_run(path: Path) -> RunReport:
    """One run's headline utility and leakage against their baselines."""
    run = _open(path)
    config = run.config()
    files = read_run_files(path)
    if files.problems:
        log.warning("%s: %s; reporting what could be read", path, "; ".join(files.problems))
    records, summary = files.records, files.summary
    attacks, threat = _attack_modes(summary, config)
    rounds_done = (
        _int(summary.get("rounds_completed")) if summary else max((_int(r.get("round")) for r in records), default=0)
    )
    return RunReport(
        path=str(path), name=path.name, status=run_status(summary, records, files.summary_problem), rounds_completed=rounds_done,
        rounds_planned=config.rounds, dataset=config.dataset, alpha=config.alpha, defense=config.defense,
        attacks=attacks, threat_mode=threat,
        fedls_version=str((summary or {}).get("fedls_version", "unknown")),
        git_commit=str((summary or {}).get("git_commit", "unknown")),
        rows=headline_rows(records),
    )


def find_runs(root: Path) -> list[Path]:
    """Run directories at or below ``root`` (``fedls compare`` nests them as
    ``<out>/<setting>/seed-<n>``); a run's own subfolders (analysis outputs) are not searched."""
    if not root.exists():
        raise ConfigError(f"{root} does not exist; pass the folder that holds run directories (default: runs)")
    if not root.is_dir():
        raise ConfigError(f"{root} is a file; pass the folder that holds run directories")
    found = []
    for folder, subfolders, files in os.walk(root):
        if CONFIG_FILE in files:
            found.append(Path(folder))
            subfolders.clear()
        else:
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
    return sorted(found)


def list_runs(root: Path) -> list[RunListing]:
    """Status and headline numbers of every run under ``root``; a damaged run is listed with
    its problem instead of hiding the others."""
    listings = []
    for path in find_runs(root):
        shown = str(path.relative_to(root)) if path != root else path.name
        try:
            report = report_run(path)
        except (ConfigError, CheckpointError) as exc:
            log.warning("%s: %s", path, exc)
            listings.append(RunListing(shown, f"unreadable: {exc}", "", "", None, "", "", None, None, None))
            continue
        listings.append(RunListing(
            path=shown, status=report.status, rounds=f"{report.rounds_completed}/{report.rounds_planned}",
            dataset=report.dataset, alpha=report.alpha, defense=report.defense, attacks=report.attacks,
            **{name: report.value(tag) for name, tag in LIST_COLUMNS.items()},
        ))
    return listings


# -- rendering -------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def format_value(row: ReportRow) -> str:
    text = fmt(row.value)
    return text if row.interval is None else f"{text} [{fmt(row.interval[0], 3)}, {fmt(row.interval[1], 3)}]"


def format_baseline(row: ReportRow) -> str:
    return "—" if row.baseline is None else f"{fmt(row.baseline)} ({row.baseline_label})"


def attacks_sentence(threat_mode: Mapping[str, str]) -> str:
    """Which attacks ran, in which threat mode — or plainly that none did."""
    gradient, model = threat_mode.get("gradient", "off"), threat_mode.get("model", "off")
    if gradient == "off" and model == "off":
        return "attacks: none — the server did not attack, so this run measured no leakage"
    parts = []
    if gradient != "off":
        changes = " (a malicious server: probed clients train differently)" if gradient.startswith("malicious") else ""
        parts.append(f"gradient attack on client updates, threat mode {gradient}{changes}")
    if model != "off":
        parts.append(f"model inversion of the global model ({model} server)")
    return "attacks: " + "; ".join(parts)


def report_markdown(report: RunReport) -> str:
    """The report as Markdown: a header, then one table per group with rows present."""
    lines = [
        f"# Run {report.name}",
        "",
        f"* status: {report.status}, {report.rounds_completed}/{report.rounds_planned} rounds",
        f"* dataset {report.dataset}, α = {report.alpha:g}, defense {report.defense}",
        f"* {attacks_sentence(report.threat_mode)}",
        f"* fedls {report.fedls_version}, commit {report.git_commit}",
    ]
    for group in GROUPS:
        rows = report.group(group)
        if not rows:
            if (
                group in (GRADIENT, MODEL_INVERSION)
                and report.threat_mode.get("gradient" if group == GRADIENT else "model", "off") == "off"
            ):
                lines += ["", f"## {group}", "", "not measured: this attack was off in this run"]
            continue
        lines += ["", f"## {group}", "", f"({ARROW_MEANING[group]})", "",
                  "| metric | ↑/↓ | final | round | mean over rounds | baseline |", "|---|:-:|--:|--:|--:|--|"]
        for row in rows:
            mean = "" if row.mean is None else f"{fmt(row.mean)} ({row.rounds_measured} rounds)"
            lines.append(f"| {row.label} | {row.arrow} | {format_value(row)} | {row.round} | {mean} | {format_baseline(row)} |")
    return "\n".join(lines) + "\n"


def report_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)
