"""Run every setting of an experiment, resumably, and write the table, plot and HParams.

Resuming: a setting whose run directory is complete is skipped; an interrupted or failed
one is moved aside to ``<out>/_aside/<name>-<status>-<n>`` (renamed, never deleted) and run
again. Outputs are rewritten after every setting, so a partial comparison is readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedls.compare.experiment import Experiment, Setting
from fedls.compare.hparams import write_hparams
from fedls.compare.plot import utility_privacy_plot
from fedls.compare.table import ResultTable, build_table, latest_metrics, row_values
from fedls.errors import ConfigError, FedlsError
from fedls.federation.server import RunInterrupted
from fedls.run_dir import CONFIG_FILE, RunDirectory

log = logging.getLogger(__name__)
ASIDE = "_aside"


@dataclass(frozen=True)
class ProgressEvent:
    """``kind``: "setting-start", "round", "setting-done", "setting-skipped", "setting-failed"."""

    kind: str
    setting: str
    index: int  # 0-based position of the setting
    total: int  # number of settings
    round: int = 0
    rounds: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]
SimulateFn = Callable[..., Any]


@dataclass
class SettingOutcome:
    setting: str
    status: str  # complete | skipped (already complete) | failed
    seconds: float = 0.0
    error: str = ""
    moved_aside: Path | None = None


@dataclass
class ComparisonResult:
    out: Path
    outcomes: list[SettingOutcome]
    table: ResultTable
    csv: Path
    markdown: Path
    plot: Path
    hparams: Path

    @property
    def failed(self) -> list[SettingOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def move_aside(path: Path, out: Path) -> Path:
    """Rename an unfinished run directory under ``<out>/_aside`` with its status and a counter."""
    summary = RunDirectory(path).summary() if (path / CONFIG_FILE).exists() else None
    status = str(summary.get("status", "unfinished")) if summary else "unfinished"
    aside = out / ASIDE
    aside.mkdir(parents=True, exist_ok=True)
    n = 1
    while (target := aside / f"{path.name}-{status}-{n}").exists():
        n += 1
    path.rename(target)
    return target


def _default_simulate() -> tuple[SimulateFn, Any]:
    from fedls.attacks import build_observers
    from fedls.federation.simulation import simulate

    return simulate, build_observers


def run_comparison(
    experiment: Experiment,
    on_progress: ProgressCallback | None = None,
    simulate_fn: SimulateFn | None = None,
    observer_factory: Any = None,
) -> ComparisonResult:
    """Run the missing settings in order, then write results.csv/.md, utility_privacy.png and
    HParams under ``experiment.out``. A setting that fails is recorded and the rest still run;
    KeyboardInterrupt stops the comparison (rerun to resume)."""
    if simulate_fn is None:
        simulate_fn, default_observers = _default_simulate()
        observer_factory = observer_factory or default_observers
    emit = on_progress or (lambda event: None)
    out = experiment.out
    out.mkdir(parents=True, exist_ok=True)
    total = len(experiment.settings)
    outcomes: list[SettingOutcome] = []
    for index, setting in enumerate(experiment.settings):
        outcomes.append(_run_setting(setting, index, total, out, emit, simulate_fn, observer_factory))
        _write_outputs(experiment, outcomes)
    return _write_outputs(experiment, outcomes)


def _run_setting(
    setting: Setting, index: int, total: int, out: Path, emit: ProgressCallback,
    simulate_fn: SimulateFn, observer_factory: Any,
) -> SettingOutcome:
    path = out / setting.name
    rounds = setting.config.rounds
    moved: Path | None = None
    if path.exists():
        if (path / CONFIG_FILE).exists() and RunDirectory(path).is_complete():
            check_same_config(RunDirectory(path), setting)
            emit(ProgressEvent("setting-skipped", setting.name, index, total, rounds, rounds, message="already complete"))
            return SettingOutcome(setting.name, "skipped")
        moved = move_aside(path, out)
        log.info("setting %s: unfinished run moved to %s", setting.name, moved)
    emit(ProgressEvent("setting-start", setting.name, index, total, 0, rounds))

    def on_round(server_round: int, record: dict[str, Any]) -> None:
        emit(ProgressEvent("round", setting.name, index, total, server_round, rounds, record))

    started = time.perf_counter()
    try:
        simulate_fn(setting.config, observer_factory=observer_factory, on_round=on_round)
    except RunInterrupted:
        raise KeyboardInterrupt from None  # the user stopped the comparison, not only this setting
    except FedlsError as exc:
        log.warning("setting %s failed: %s", setting.name, exc)
        emit(ProgressEvent("setting-failed", setting.name, index, total, 0, rounds, message=str(exc)))
        return SettingOutcome(setting.name, "failed", time.perf_counter() - started, str(exc), moved)
    seconds = time.perf_counter() - started
    emit(ProgressEvent("setting-done", setting.name, index, total, rounds, rounds, message=f"{seconds:.1f} s"))
    return SettingOutcome(setting.name, "complete", seconds, moved_aside=moved)


IGNORED_KEYS = ("run_dir", "name", "device")  # where and on what a run ran, not what it is


def check_same_config(run: RunDirectory, setting: Setting) -> None:
    """A finished run is reused only if it was made with this setting's configuration; otherwise
    resuming would silently report results of another experiment (e.g. another seed)."""
    stored = {k: v for k, v in run.config().to_dict().items() if k not in IGNORED_KEYS}
    wanted = {k: v for k, v in setting.config.to_dict().items() if k not in IGNORED_KEYS}
    differing = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    if differing:
        raise ConfigError(
            f"{run.path} holds a finished run with another configuration ({', '.join(differing)}); "
            "pass another --out or move that folder away"
        )


def _write_outputs(experiment: Experiment, outcomes: list[SettingOutcome]) -> ComparisonResult:
    out = experiment.out
    entries = []
    for setting in experiment.settings:
        path = out / setting.name
        run = RunDirectory(path) if (path / CONFIG_FILE).exists() else None
        summary = run.summary() if run else None
        status = str(summary.get("status")) if summary else ("not run" if run is None else "running")
        metrics = latest_metrics(run) if run is not None else {}
        entries.append((setting.name, setting.config.defense, setting.config.alpha, status, metrics))
    table = build_table(entries, experiment.baseline)
    csv_path, md_path = table.write(out)
    rows = row_values(table)
    plot = utility_privacy_plot(rows, experiment.baseline, out / "utility_privacy.png")
    hparams_root = out / "hparams"
    by_name = {s.name: s for s in experiment.settings}
    for row, (name, _, _, status, _) in zip(rows, entries, strict=True):
        if status == "complete":
            metrics = {k: v for k, v in row.items() if k not in ("setting", "defense", "alpha")}
            write_hparams(hparams_root, name, by_name[name].config, metrics)
    return ComparisonResult(out, list(outcomes), table, csv_path, md_path, plot, hparams_root)
