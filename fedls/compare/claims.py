"""Published claims checked against a comparison: does the measured change go the claimed way?

A claims file (TOML) lists directions a paper reports, e.g. that positive label smoothing
raises model-inversion Acc@1 (Struppek et al. 2024, Table 1)::

    [[claim]]
    setting = "alpha-0.1"
    metric = "attack_acc1"
    direction = "higher"
    source = "Struppek et al. 2024, Table 1: positive smoothing raises leakage"

Each claim is judged on the paired test of the setting against the comparison's baseline:
``holds`` (significant, the claimed sign), ``contradicted`` (significant, the other sign) or
``not shown`` (inside the noise, or too few seeds to test). The verdict rests on the paired
test over seeds; the pooled count test for Acc@1 is shown beside it, not used, because it
ignores the spread between seeds. Utility travels with every claim: a leakage change is read
beside what the setting cost in test accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from fedls.compare.results import COLUMNS, Column, ComparisonStats, MetricStats
from fedls.config import read_toml
from fedls.errors import ConfigError
from fedls.schema import Options
from fedls.stats import SIGNIFICANCE

UTILITY = "test_acc"
METRICS = tuple(c.key for c in COLUMNS)
LABELS = {c.key: c.label for c in COLUMNS}


class Claim(Options):
    setting: str = Field(description="setting of the comparison the claim is about")
    metric: str = Field(description="column key (fedls.compare.results.COLUMNS), e.g. attack_acc1")
    direction: Literal["higher", "lower"] = Field(description="claimed change against the baseline")
    source: str = Field(min_length=1, description="who claims it, by authors and year, and where")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric; use one of {', '.join(METRICS)}")
        return value


class ClaimsFile(Options):
    claim: list[Claim] = Field(default_factory=list)


def read_claims(path: Path) -> list[Claim]:
    return ClaimsFile.parse(read_toml(path, "claims file"), str(path)).claim


def judge(stats: MetricStats, direction: str) -> str:
    test = stats.test
    if test is None or test.p_t is None:
        n = 0 if test is None else test.n
        return f"not shown (not testable with {n} paired seed{'s' if n != 1 else ''})"
    if test.p_t >= SIGNIFICANCE:
        return "not shown (inside the noise)"
    measured = "higher" if test.mean_diff > 0 else "lower"
    return "holds" if measured == direction else "contradicted"


def format_signed(value: float, low: float | None, high: float | None, column: Column) -> str:
    """A change with its interval in the column's unit: "+4.0 [-3.8, +11.8]" (percentage points
    for % columns); the interval is left out when there is none."""
    scale, digits = (100.0, 1) if column.percent else (1.0, column.digits)
    text = f"{scale * value:+.{digits}f}"
    if low is not None and high is not None:
        text += f" [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"
    return text


def format_change(stats: MetricStats) -> str:
    """The paired change against the baseline with its 95 % interval, or "–" without a test."""
    test = stats.test
    return "–" if test is None else format_signed(test.mean_diff, test.ci_low, test.ci_high, stats.column)


def format_p(value: float | None) -> str:
    return "–" if value is None else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def claims_markdown(stats: ComparisonStats, claims: list[Claim]) -> str:
    """One row per claim whose setting is in ``stats``; claims about other settings are skipped."""
    names = {row.info.name for row in stats.rows}
    rows = []
    for claim in claims:
        if claim.setting not in names:
            continue
        if claim.setting == stats.baseline:
            raise ConfigError(f"claim about {claim.setting!r}: that is the baseline; claims compare a setting with it")
        row = stats.row(claim.setting)
        metric, utility = row.metrics[claim.metric], row.metrics[UTILITY]
        pooled = format_p(row.count_test.p) if claim.metric == "attack_acc1" and row.count_test is not None else "–"
        n, p_t = (metric.test.n, metric.test.p_t) if metric.test is not None else (0, None)
        verdict = judge(metric, claim.direction)
        rows.append(
            f"| {claim.source} | {claim.setting} | {metric.column.label} {claim.direction} | {format_change(metric)} | {n} "
            f"| {format_p(p_t)} | {pooled} | {format_change(utility)} | **{verdict}** |"
        )
    if not rows:
        return "No claim in the claims file is about a setting of this comparison.\n"
    header = (
        f"| Claim | Setting | Claimed vs {stats.baseline} | Measured Δ [95 % CI] | Seeds | p (paired t) | p (pooled images) "
        "| Test Acc Δ [95 % CI] | Verdict |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    legend = (
        "\nΔ in percentage points against the baseline, paired by seed. Verdict from the paired t-test "
        f"(p < {SIGNIFICANCE:g}): *holds* = significant in the claimed direction, *contradicted* = significant "
        "in the other, *not shown* = inside the noise. The pooled test counts every attack image as independent "
        "and is shown for reference only.\n"
    )
    return header + "\n".join(rows) + "\n" + legend


def claims_matrix(studies: dict[str, ComparisonStats], claims: list[Claim]) -> str:
    """Every claim against every study at once: the verdict, the measured change and the utility
    change in one cell per study ("–" where the study lacks the setting or uses it as its baseline,
    against which nothing can change)."""
    names = list(studies)
    rows = []
    for claim in claims:
        cells, verdicts = [], []
        for name in names:
            stats = studies[name]
            if claim.setting not in {row.info.name for row in stats.rows} or claim.setting == stats.baseline:
                cells.append("–")
                continue
            row = stats.row(claim.setting)
            metric, utility = row.metrics[claim.metric], row.metrics[UTILITY]
            verdicts.append(judge(metric, claim.direction))
            cells.append(f"**{verdicts[-1]}**: {format_change(metric)}; test acc {format_change(utility)}")
        if verdicts:
            rows.append(f"| {claim.source} | {claim.setting}: {LABELS[claim.metric]} {claim.direction} | "
                        + " | ".join(cells) + f" | {verdict_tally(verdicts)} |")
    if not rows:
        return "No claim in the claims file is about a setting of these comparisons.\n"
    header = "| Claim | Claimed change | " + " | ".join(f"`{n}`" for n in names) + " | Across studies |\n"
    header += "|---|---|" + "---|" * len(names) + "---|\n"
    legend = (
        "\nEach cell: the verdict of the paired t-test over seeds against the study's baseline "
        f"(p < {SIGNIFICANCE:g}), the measured change [95 % CI] in percentage points, and the change of test "
        "accuracy [95 % CI] it came with; \"–\": the study lacks the setting or it is the study's baseline. "
        "*Across studies* counts the verdicts of the studies that have the setting. "
        "Each study's own section gives its seeds, p-values and pooled tests.\n"
    )
    return header + "\n".join(rows) + "\n" + legend


def verdict_tally(verdicts: list[str]) -> str:
    """How often each verdict came out, in the order holds, contradicted, not shown (the reasons a
    claim was not shown are merged): "holds 2 of 4, not shown 2 of 4"."""
    kinds = [v.split(" (")[0] for v in verdicts]
    counts = [(kind, kinds.count(kind)) for kind in ("holds", "contradicted", "not shown")]
    return ", ".join(f"{kind} {n} of {len(kinds)}" for kind, n in counts if n)
