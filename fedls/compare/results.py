"""A comparison's results read back from its run directories, with statistics over seeds.

Layout of a comparison folder (written by :mod:`fedls.compare.runner`)::

    <out>/comparison.json            what was compared: settings, baseline, seeds, command, provenance per run
    <out>/<setting>/seed-<n>/        one fedls run directory per setting and seed
    <out>/results.csv, results.md    the tables (:mod:`fedls.compare.table`)
    <out>/utility_privacy.png        the plot (:mod:`fedls.compare.plot`)

Everything here is recomputed from the run directories' ``metrics.jsonl`` and ``summary.json``,
so the documentation generator (``scripts/make_docs.py``) and ``fedls compare`` give the same
numbers. Only complete runs enter the statistics; a metric a run did not log is missing, never
filled in. A run whose records a crash or a full disk left cut off or empty is ``damaged``: it
is left out like an unfinished run (``fedls compare`` runs it again when resuming).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedls.errors import CheckpointError
from fedls.outputs import write_atomic
from fedls.run_dir import CONFIG_FILE
from fedls.stats import CountTest, PairedTest, Summary, describe, paired_test, two_proportion_z
from fedls.studies.reports import read_run_files

log = logging.getLogger(__name__)
MANIFEST = "comparison.json"
LAYOUT = "setting/seed-N"


@dataclass(frozen=True)
class Column:
    """One metric: a label, the metrics.jsonl keys to look for, and its display.

    ``sources`` holds alternative *measures* in order of preference (e.g. δ_face before δ_eval);
    each measure lists equivalent key names (the current name first, then older spellings such
    as ``mia/acc1``), so runs from before a rename still count as the same measure. Values of
    different measures are never compared with each other.
    """

    key: str
    label: str
    sources: tuple[tuple[str, ...], ...]
    percent: bool = False
    digits: int = 3


def _mi(name: str, headline: bool = False) -> tuple[str, ...]:
    """Model-inversion keys: headline numbers under ``leakage/``, the rest under ``diagnostics/``;
    ``mia/`` in runs from before that split."""
    current = f"leakage/model_inversion/{name}" if headline else f"diagnostics/model_inversion/{name}"
    return (current, f"mia/{name}")


COLUMNS: tuple[Column, ...] = (
    Column("test_acc", "Test Acc ↑", (("global/accuracy",),), percent=True),
    Column("ece", "ECE ↓", (("global/ece",),)),
    Column("attack_acc1", "Attack Acc@1", (_mi("acc1", headline=True),), percent=True),
    # what the prior's own samples score before optimisation: Acc@1 above it is what the attack extracted
    Column("prior_acc1", "Prior Acc@1", (_mi("baseline_acc1", headline=True),), percent=True),
    Column("judge_acc", "Judge Acc", (_mi("judge_accuracy", headline=True),), percent=True),
    Column("attack_acc5", "Attack Acc@5", (_mi("acc5"),), percent=True),
    # δ_face (FaceNet distance) when the attack computed it, else the evaluation model's δ_eval
    Column("delta", "δ_face/δ_eval", (_mi("delta_face"), _mi("delta_eval")), digits=2),
    Column("xi_train", "ξ_train", (_mi("xi_train"),), percent=True),
    Column("xi_test", "ξ_test", (_mi("xi_test"),), percent=True),
    # gradient inversion: share of probed client updates whose soft label was recovered within
    # tolerance, and PSNR of the soft-label reconstructions
    Column(
        "label_recovery", "Label recovery", (("leakage/gradient/probe_label_success", "gradient/success_rate"),), percent=True
    ),
    Column("psnr", "PSNR (dB)", (("leakage/gradient/recon_psnr", "gradient/recon_psnr"),), digits=2),
    Column("epsilon", "DP ε", (("clients/epsilon",),), digits=2),
)
ACC1_KEYS = _mi("acc1", headline=True)
NUM_IMAGES_KEYS = ("diagnostics/model_inversion/num_images", "leakage/model_inversion/num_images", "mia/num_images")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def latest_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """For every key, its value in the latest round that logged it (attacks may run every k rounds)."""
    merged: dict[str, float] = {}
    for record in records:
        for key, value in record.items():
            if _number(value):
                merged[key] = float(value)
    return merged


def pick(metrics: Mapping[str, float], column: Column) -> tuple[int, float] | None:
    """The first measure of ``column`` that ``metrics`` holds: (measure index, value)."""
    for index, aliases in enumerate(column.sources):
        for key in aliases:
            if key in metrics:
                return index, metrics[key]
    return None


def acc1_counts(records: Sequence[Mapping[str, Any]]) -> tuple[int, int] | None:
    """(correct, total) attack images of the latest model-inversion record that logged both Acc@1
    and the number of images; None for runs from before ``num_images`` was logged."""
    for record in reversed(records):
        acc1 = next((record[k] for k in ACC1_KEYS if _number(record.get(k))), None)
        if acc1 is None:
            continue
        total = next((record[k] for k in NUM_IMAGES_KEYS if _number(record.get(k))), None)
        if total is None or total < 1:
            return None
        correct = round(acc1 * total)
        if abs(acc1 * total - correct) > 1e-6 * total:
            log.warning("Acc@1 %.6f of %d images is not a count; the pooled count test leaves this run out", acc1, total)
            return None
        return int(correct), int(total)
    return None


@dataclass(frozen=True)
class SettingInfo:
    name: str
    defense: str
    alpha: float


@dataclass
class Manifest:
    """What a comparison folder holds; written before the first run, updated after each."""

    name: str
    baseline: str
    seeds: list[int]
    settings: list[SettingInfo]
    command: str = ""
    description: str = ""
    layout: str = LAYOUT
    # provenance of the code that produced each finished run, keyed "<setting>/seed-<n>"
    runs: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def write(self, out: Path) -> Path:
        return write_atomic(out / MANIFEST, self.to_json())

    @classmethod
    def read(cls, out: Path) -> Manifest:
        path = out / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{out} holds no {MANIFEST}; pass a folder written by `fedls compare`") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("layout") != LAYOUT:
            layout = data.get("layout") if isinstance(data, dict) else None
            raise CheckpointError(f"{path}: unknown layout {layout!r}; it was not written by this version of `fedls compare`")
        try:
            data["settings"] = [SettingInfo(**s) for s in data["settings"]]
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None


@dataclass
class RunResult:
    setting: str
    seed: int
    status: str  # complete | interrupted | failed | running | damaged | not run
    metrics: dict[str, float] = field(default_factory=dict)
    counts: tuple[int, int] | None = None  # Acc@1 as (correct, total) attack images
    provenance: dict[str, str] = field(default_factory=dict)
    problem: str = ""  # why a damaged run's records cannot be trusted


def run_key(setting: str, seed: int) -> str:
    return f"{setting}/seed-{seed}"


def read_run(out: Path, setting: str, seed: int, recorded: Mapping[str, str] | None = None) -> RunResult:
    """One run directory; its provenance from ``summary.json`` if the simulation wrote it there,
    else what the comparison recorded when the run finished."""
    path = out / setting / f"seed-{seed}"
    if not (path / CONFIG_FILE).exists():
        return RunResult(setting, seed, "not run")
    files = read_run_files(path)
    if files.problems:
        problem = "; ".join(files.problems)
        log.info("%s is damaged (%s); left out of the statistics", path, problem)
        return RunResult(setting, seed, "damaged", problem=problem)
    summary, records = files.summary, files.records
    if summary is None:
        return RunResult(setting, seed, "running")
    prov: dict[str, str] = {k: str(summary[k]) for k in ("fedls_version", "git_commit") if k in summary}
    if not prov and recorded:
        prov = dict(recorded)
    return RunResult(setting, seed, str(summary.get("status", "unknown")), latest_metrics(records), acc1_counts(records), prov)


@dataclass
class MetricStats:
    """One metric of one setting over its complete seeds, and the paired test against the baseline."""

    column: Column
    measure: int | None  # index into column.sources; None when no run measured it
    seeds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    summary: Summary | None = None
    test: PairedTest | None = None  # None for the baseline itself and when nothing is paired


@dataclass
class SettingStats:
    info: SettingInfo
    runs: list[RunResult]
    metrics: dict[str, MetricStats]
    counts: tuple[int, int] | None  # pooled Acc@1 counts over the complete seeds
    count_test: CountTest | None  # pooled over the seeds both this setting and the baseline have

    @property
    def complete_seeds(self) -> list[int]:
        return [r.seed for r in self.runs if r.status == "complete"]

    def status(self) -> str:
        done = len(self.complete_seeds)
        text = f"{done}/{len(self.runs)} complete"
        for status in ("failed", "damaged"):
            count = sum(r.status == status for r in self.runs)
            text += f", {count} {status}" if count else ""
        return text

    def provenance(self, key: str) -> str:
        """The code version(s) behind this setting's complete runs ("unknown" if unrecorded)."""
        found = sorted({r.provenance.get(key, "unknown") for r in self.runs if r.status == "complete"})
        return ";".join(found)


@dataclass
class ComparisonStats:
    manifest: Manifest
    rows: list[SettingStats]

    @property
    def baseline(self) -> str:
        return self.manifest.baseline

    def row(self, name: str) -> SettingStats:
        return next(r for r in self.rows if r.info.name == name)


def _measured(runs: Sequence[RunResult], column: Column) -> tuple[int | None, dict[int, float]]:
    """The preferred measure present in any complete run, and its value per seed."""
    picked = {r.seed: pick(r.metrics, column) for r in runs if r.status == "complete"}
    present = [p[0] for p in picked.values() if p is not None]
    if not present:
        return None, {}
    measure = min(present)
    return measure, {seed: p[1] for seed, p in picked.items() if p is not None and p[0] == measure}


def analyse(
    manifest: Manifest, runs: Mapping[tuple[str, int], RunResult], columns: Sequence[Column] = COLUMNS
) -> ComparisonStats:
    """Statistics for every setting; paired tests over the seeds a setting shares with the baseline."""
    by_setting = {s.name: [runs[(s.name, seed)] for seed in manifest.seeds] for s in manifest.settings}
    base_runs = by_setting[manifest.baseline]
    base_measured = {c.key: _measured(base_runs, c) for c in columns}
    base_counts = {r.seed: r.counts for r in base_runs if r.status == "complete" and r.counts}
    rows = []
    for info in manifest.settings:
        setting_runs = by_setting[info.name]
        metrics: dict[str, MetricStats] = {}
        for column in columns:
            measure, values = _measured(setting_runs, column)
            stats = MetricStats(column, measure, list(values), list(values.values()))
            if values:
                stats.summary = describe(stats.values)
            base_measure, base_values = base_measured[column.key]
            paired = [s for s in values if s in base_values]
            if info.name != manifest.baseline and paired and measure == base_measure:
                stats.test = paired_test([values[s] for s in paired], [base_values[s] for s in paired])
            metrics[column.key] = stats
        own = {r.seed: r.counts for r in setting_runs if r.status == "complete" and r.counts}
        counts = (sum(c[0] for c in own.values()), sum(c[1] for c in own.values())) if own else None
        count_test = None
        shared = [s for s in own if s in base_counts]
        if info.name != manifest.baseline and shared:
            k1, n1 = sum(own[s][0] for s in shared), sum(own[s][1] for s in shared)
            k2, n2 = sum(base_counts[s][0] for s in shared), sum(base_counts[s][1] for s in shared)
            count_test = two_proportion_z(k1, n1, k2, n2)
        rows.append(SettingStats(info, setting_runs, metrics, counts, count_test))
    return ComparisonStats(manifest, rows)


def load_results(out: Path, manifest: Manifest | None = None) -> ComparisonStats:
    """Read a comparison folder (its manifest and every run directory) and compute the statistics."""
    manifest = manifest or Manifest.read(out)
    runs = {
        (s.name, seed): read_run(out, s.name, seed, manifest.runs.get(run_key(s.name, seed)))
        for s in manifest.settings for seed in manifest.seeds
    }
    return analyse(manifest, runs)
