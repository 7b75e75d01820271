"""Run every setting of an experiment once per seed, resumably, and write the tables, plot and HParams.

Before anything is written, :func:`check_comparison` refuses what would fail later: an output
folder that ``fedls compare`` did not write, finished runs of another configuration, and every
setting's configuration against this machine and the data (device, client resources, dataset,
model). Bad input therefore leaves the output folder as it was.

Runs go to ``<out>/<setting>/seed-<n>``, seed by seed (every setting for the first seed, then
the next seed), so an interrupted comparison still holds paired results. Resuming: a complete
run is skipped (if it was made with the same configuration); an interrupted, failed or damaged
one (its ``metrics.jsonl`` cut off or its ``summary.json`` empty or corrupt, as a crash or a full
disk leaves them) is moved aside to ``<out>/_aside/<setting>-seed-<n>-<status>-<k>`` (renamed,
never deleted) and run again. ``comparison.json`` records what is compared and which code
version made each run, and marks the folder as written by ``fedls compare``: only such a folder
(or a new or empty one) is written into. Outputs (tables, plot, ``comparison.json``) are
replaced in one step after every run, so a partial comparison is readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedls.compare.experiment import Experiment, Setting, check_out_folder
from fedls.compare.hparams import write_hparams
from fedls.compare.plot import utility_privacy_plot
from fedls.compare.results import MANIFEST, ComparisonStats, Manifest, SettingInfo, load_results, run_key
from fedls.compare.table import ResultTable
from fedls.config import RunConfig
from fedls.errors import CheckpointError, ConfigError, FedlsError
from fedls.federation.server import RunInterrupted
from fedls.provenance import provenance
from fedls.run_dir import CONFIG_FILE, OutputError, RunDirectory
from fedls.studies.reports import read_run_files

log = logging.getLogger(__name__)
ASIDE = "_aside"


@dataclass(frozen=True)
class ProgressEvent:
    """``kind``: "setting-start", "round", "setting-done", "setting-skipped", "setting-failed".

    One event stream per run (a setting at one seed); ``index``/``total`` count runs."""

    kind: str
    setting: str
    index: int  # 0-based position of the run
    total: int  # number of runs (settings × seeds)
    round: int = 0
    rounds: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    seed: int = 0


ProgressCallback = Callable[[ProgressEvent], None]
SimulateFn = Callable[..., Any]
PrepareFn = Callable[[RunConfig], Any]  # validates one run against the machine and the data; writes nothing


@dataclass
class RunOutcome:
    setting: str
    seed: int
    status: str  # complete | skipped (already complete) | failed
    seconds: float = 0.0
    error: str = ""
    moved_aside: Path | None = None


@dataclass
class ComparisonResult:
    out: Path
    outcomes: list[RunOutcome]
    stats: ComparisonStats
    table: ResultTable
    csv: Path
    markdown: Path
    plot: Path
    hparams: Path

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


@dataclass(frozen=True)
class RunState:
    """What a run directory of the comparison holds when it resumes."""

    kind: str  # missing | complete | unfinished | damaged
    reason: str = ""  # why an unfinished or damaged run is run again
    status: str = "unfinished"  # its summary's status, or "damaged"; names the folder it is moved aside to


def run_state(path: Path) -> RunState:
    """Complete means finished and intact: summary.json says ``complete`` and every line of
    metrics.jsonl is readable. A cut-off or corrupt file never raises here."""
    if not path.exists():
        return RunState("missing")
    if not (path / CONFIG_FILE).is_file():
        return RunState("unfinished", f"it has no {CONFIG_FILE} (stopped while it was being created)")
    files = read_run_files(path)
    if files.problems:
        return RunState("damaged", "; ".join(files.problems), "damaged")
    if files.summary is None:
        return RunState("unfinished", "it has no summary.json (killed before it finished)")
    status = str(files.summary.get("status", "unknown"))
    if status != "complete":
        return RunState("unfinished", f"its summary.json says {status!r}", status)
    return RunState("complete")  # config.toml (written in one step) is compared by check_same_config


def move_aside(path: Path, out: Path, label: str, status: str | None = None) -> Path:
    """Rename an unfinished run directory under ``<out>/_aside`` with its status and a counter."""
    status = status or run_state(path).status
    aside = out / ASIDE
    aside.mkdir(parents=True, exist_ok=True)
    n = 1
    while (target := aside / f"{label}-{status}-{n}").exists():
        n += 1
    path.rename(target)
    return target


def _default_simulate() -> SimulateFn:
    from fedls.federation.simulation import simulate

    return simulate  # with observer_factory None it builds the attacks the config asks for


def manifest_for(experiment: Experiment, command: str, previous: Manifest | None) -> Manifest:
    """The manifest of ``experiment``; provenance of runs recorded earlier is kept."""
    settings = [SettingInfo(s.name, s.config.defense, float(s.config.alpha)) for s in experiment.settings]
    runs = dict(previous.runs) if previous else {}
    return Manifest(
        name=experiment.name, baseline=experiment.baseline, seeds=list(experiment.seeds), settings=settings,
        command=command or (previous.command if previous else ""), description=experiment.description, runs=runs,
    )


def _check_layout(experiment: Experiment) -> None:
    """Refuse a folder from the one-run-per-setting layout before anything is written into it."""
    for setting in experiment.settings:
        if (experiment.out / setting.name / CONFIG_FILE).exists():
            raise ConfigError(
                f"{experiment.out / setting.name} is a run directory of an older comparison layout; "
                "pass another --out (runs now live in <out>/<setting>/seed-<n>)"
            )


def check_owned(out: Path) -> None:
    """``fedls compare`` writes only into a new or empty folder or one it wrote itself (its
    ``comparison.json`` marks it), so that no file of the user is ever replaced."""
    check_out_folder(out, "--out")
    try:
        if not out.exists() or not any(out.iterdir()):
            return
    except OSError as exc:
        raise ConfigError(f"cannot read the output folder {out}: {exc.strerror}; choose another --out") from None
    if not (out / MANIFEST).is_file():
        raise ConfigError(f"{out} exists and was not written by fedls compare; choose another --out or remove it")
    try:
        Manifest.read(out)
    except CheckpointError as exc:
        raise ConfigError(f"{exc}; choose another --out or remove {out}") from None


def _default_prepare() -> PrepareFn:
    from fedls.federation.simulation import prepare

    return prepare


@dataclass(frozen=True)
class CheckedComparison:
    """An experiment that passed :func:`check_comparison`; nothing has been written yet."""

    experiment: Experiment


def check_comparison(experiment: Experiment, prepare_fn: PrepareFn | None = None) -> CheckedComparison:
    """Everything that can be refused before a file is written: the output folder (see
    :func:`check_owned`), finished runs made with another configuration, and every setting's
    configuration against this machine and the data (``prepare_fn``, by default the simulator's
    own check of device, client resources, dataset and model). Seeds change only the seed, so
    each setting is checked once."""
    _check_layout(experiment)  # before check_owned: its message names the older layout
    check_owned(experiment.out)
    for _setting, _seed, config in experiment.runs():
        path = Path(config.run_dir) / str(config.name)
        if run_state(path).kind == "complete":
            check_same_config(RunDirectory(path), config)
    prepare = prepare_fn or _default_prepare()
    for setting in experiment.settings:
        # without its run name: a finished seed's directory exists by design and is skipped later
        prepare(experiment.run_config(setting, experiment.seeds[0]).model_copy(update={"name": None}))
    return CheckedComparison(experiment)


def run_comparison(
    experiment: Experiment | CheckedComparison,
    on_progress: ProgressCallback | None = None,
    simulate_fn: SimulateFn | None = None,
    observer_factory: Any = None,
    command: str = "",
    prepare_fn: PrepareFn | None = None,
) -> ComparisonResult:
    """Run the missing runs (settings × seeds), then write results.csv/.md, utility_privacy.png,
    comparison.json and HParams under ``experiment.out``. An experiment not yet checked is
    checked first (:func:`check_comparison` with ``prepare_fn``). A run that fails is recorded
    and the rest still run; KeyboardInterrupt and a run that cannot write its outputs (a full
    disk: :class:`~fedls.run_dir.OutputError`) stop the comparison (rerun to resume).
    ``command`` is recorded as the command line that produced the results."""
    if isinstance(experiment, Experiment):
        experiment = check_comparison(experiment, prepare_fn)
    experiment = experiment.experiment
    if simulate_fn is None:
        simulate_fn = _default_simulate()
    emit = on_progress or (lambda event: None)
    out = experiment.out
    out.mkdir(parents=True, exist_ok=True)
    previous = Manifest.read(out) if (out / MANIFEST).exists() else None
    manifest = manifest_for(experiment, command, previous)
    manifest.write(out)
    plan = list(experiment.runs())
    outcomes: list[RunOutcome] = []
    for index, (setting, seed, config) in enumerate(plan):
        outcome = _run_one(setting, seed, config, index, len(plan), out, emit, simulate_fn, observer_factory)
        outcomes.append(outcome)
        key = run_key(setting.name, seed)
        if outcome.status == "complete":
            manifest.runs[key] = provenance()  # asked after each run: the checkout may change during a comparison
            manifest.write(out)
        _write_outputs(experiment, manifest, outcomes)
    return _write_outputs(experiment, manifest, outcomes)


def _run_one(
    setting: Setting, seed: int, config: RunConfig, index: int, total: int, out: Path, emit: ProgressCallback,
    simulate_fn: SimulateFn, observer_factory: Any,
) -> RunOutcome:
    path = Path(config.run_dir) / str(config.name)
    rounds = config.rounds
    moved: Path | None = None

    def event(kind: str, r: int = 0, record: dict[str, Any] | None = None, message: str = "") -> None:
        emit(ProgressEvent(kind, setting.name, index, total, r, rounds, record or {}, message, seed))

    state = run_state(path)
    if state.kind == "complete":  # its configuration was compared in check_comparison
        event("setting-skipped", rounds, message="already complete")
        return RunOutcome(setting.name, seed, "skipped")
    if state.kind != "missing":
        moved = move_aside(path, out, f"{setting.name}-{path.name}", state.status)
        level = logging.WARNING if state.kind == "damaged" else logging.INFO
        log.log(level, "setting %s, seed %d: %s counts as unfinished because %s; moved to %s and running it again",
                setting.name, seed, path, state.reason, moved)
    event("setting-start")

    def on_round(server_round: int, record: dict[str, Any]) -> None:
        event("round", server_round, record)

    started = time.perf_counter()
    try:
        simulate_fn(config, observer_factory=observer_factory, on_round=on_round)
    except RunInterrupted:
        raise KeyboardInterrupt from None  # the user stopped the comparison, not only this run
    except OutputError:
        raise  # a full disk fails every later setting the same way: stop, the finished runs stay
    except FedlsError as exc:
        log.warning("setting %s, seed %d failed: %s", setting.name, seed, exc)
        event("setting-failed", message=str(exc))
        return RunOutcome(setting.name, seed, "failed", time.perf_counter() - started, str(exc), moved)
    seconds = time.perf_counter() - started
    event("setting-done", rounds, message=f"{seconds:.1f} s")
    return RunOutcome(setting.name, seed, "complete", seconds, moved_aside=moved)


IGNORED_KEYS = ("run_dir", "name", "device")  # where and on what a run ran, not what it is


def check_same_config(run: RunDirectory, config: RunConfig) -> None:
    """A finished run is reused only if it was made with this run's configuration; otherwise
    resuming would silently report results of another experiment (e.g. other rounds)."""
    stored = {k: v for k, v in run.config().to_dict().items() if k not in IGNORED_KEYS}
    wanted = {k: v for k, v in config.to_dict().items() if k not in IGNORED_KEYS}
    differing = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    if differing:
        raise ConfigError(
            f"{run.path} holds a finished run with another configuration ({', '.join(differing)}); "
            "pass another --out or move that folder away"
        )


def _distinct(stats: ComparisonStats, key: str) -> list[str]:
    return sorted({value for row in stats.rows if row.complete_seeds for value in row.provenance(key).split(";")})


def stamp(stats: ComparisonStats) -> str:
    """Which code and command produced these numbers (for results.md and generated docs)."""
    versions, commits = _distinct(stats, "fedls_version"), _distinct(stats, "git_commit")
    # a long comparison in a shared checkout may span commits; say so rather than pick one
    where = f"commit {commits[0]}" if len(commits) == 1 else f"commits {', '.join(commits) or 'unknown'}"
    manifest = stats.manifest
    return (
        f"Runs made by fedls {', '.join(versions) or 'unknown'} at {where}; "
        f"{_seeds_run(manifest)}; command: `{manifest.command or 'unknown'}`."
    )


def _seeds_run(manifest: Manifest) -> str:
    """The seeds with at least one finished run, and the planned ones when some never ran."""
    planned = ", ".join(map(str, manifest.seeds))
    finished = [seed for seed in manifest.seeds if any(run_key(s.name, seed) in manifest.runs for s in manifest.settings)]
    if not manifest.runs or finished == sorted(manifest.seeds):
        return f"seeds {planned}"
    return f"seeds {', '.join(map(str, finished)) or 'none'} so far of the planned {planned}"


def _write_outputs(experiment: Experiment, manifest: Manifest, outcomes: list[RunOutcome]) -> ComparisonResult:
    out = experiment.out
    stats = load_results(out, manifest)
    table = ResultTable(stats)
    csv_path, md_path = table.write(out, stamp(stats))
    plot = utility_privacy_plot(stats, out / "utility_privacy.png")
    hparams_root = out / "hparams"
    for setting, seed, config in experiment.runs():
        run = next(r for r in stats.row(setting.name).runs if r.seed == seed)
        if run.status == "complete":
            values = {key: m.values[m.seeds.index(seed)] for key, m in stats.row(setting.name).metrics.items() if seed in m.seeds}
            write_hparams(hparams_root, run_key(setting.name, seed), config, values)
    return ComparisonResult(out, list(outcomes), stats, table, csv_path, md_path, plot, hparams_root)
