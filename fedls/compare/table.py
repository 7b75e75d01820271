"""The results tables (CSV and Markdown) in the layout of Struppek et al. (2024), Table 1, over seeds.

Markdown: a main table (mean ± sd over seeds and the mean paired change against the baseline,
``*`` where the paired t-test gives p < 0.05) and a tests table that spells out, for every
setting and metric, the change, its 95 % interval, the p-values and the verdict ("significant"
or "inside the noise"), plus the pooled count test for Acc@1. CSV: the same numbers in long
form, one row per setting and metric, with the code version and commit behind them. A metric a
run did not produce is shown as "–"; nothing is filled in or estimated.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedls.compare.results import Column, ComparisonStats, MetricStats, SettingStats
from fedls.outputs import write_atomic
from fedls.stats import SIGNIFICANCE, CountTest, PairedTest, wilson_interval

MISSING = "–"
POOLED_KEY = "attack_acc1_pooled"
CSV_FIELDS = (
    "setting", "defense", "alpha", "status", "metric", "measure", "n", "seeds", "values", "mean", "sd", "ci_low",
    "ci_high", "delta", "delta_ci_low", "delta_ci_high", "n_pairs", "test", "p", "p_wilcoxon", "significant",
    "fedls_version", "git_commit",
)


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def verdict(p: float | None, pairs: int, reason: str = "") -> str:
    if p is None:
        return f"not tested ({reason or f'{pairs} paired seed' + ('s' if pairs != 1 else '')})"
    return "significant" if p < SIGNIFICANCE else "inside the noise"


def _test_verdict(test: PairedTest) -> str:
    if test.p_t is None and test.n >= 2:
        return verdict(None, test.n, "identical differences, no spread")
    return verdict(test.p_t, test.n)


@dataclass
class ResultTable:
    stats: ComparisonStats

    @property
    def baseline(self) -> str:
        return self.stats.baseline

    @property
    def columns(self) -> Sequence[Column]:
        """Every metric some setting measured (the CSV keeps all, with empty cells)."""
        first = self.stats.rows[0]
        return [m.column for m in first.metrics.values() if any(r.metrics[m.column.key].summary for r in self.stats.rows)]

    # -- cells -------------------------------------------------------------------------
    @staticmethod
    def scaled(column: Column, value: float) -> float:
        return 100 * value if column.percent else value

    def fmt(self, column: Column, value: float, signed: bool = False) -> str:
        digits = 1 if column.percent else column.digits
        return f"{self.scaled(column, value):{'+' if signed else ''}.{digits}f}"

    def value_cell(self, row: SettingStats, stats: MetricStats) -> str:
        """``84.0 ± 3.1 (−5.0*)``: mean ± sd, then the mean paired change (* = p < 0.05)."""
        if stats.summary is None:
            return MISSING
        column = stats.column
        text = self.fmt(column, stats.summary.mean)
        if stats.summary.sd is not None:
            text += f" ± {self.fmt(column, stats.summary.sd)}"
        if stats.test is not None:
            star = "*" if stats.test.significant else ""
            text += f" ({self.fmt(column, stats.test.mean_diff, signed=True)}{star})"
        return text

    def header(self) -> list[str]:
        return ["Setting", "Defense", "α", "Seeds", *(c.label for c in self.columns)]

    def cells(self, row: SettingStats) -> list[str]:
        return [
            row.info.name, row.info.defense, f"{row.info.alpha:g}", row.status(),
            *(self.value_cell(row, row.metrics[c.key]) for c in self.columns),
        ]

    def test_rows(self) -> list[list[str]]:
        """Setting, metric, change, 95 % CI of the change, pairs, p (t), p (Wilcoxon), verdict."""
        out = []
        for row in self.stats.rows:
            if row.info.name == self.baseline:
                continue
            for stats in row.metrics.values():
                test, column = stats.test, stats.column
                if test is None:
                    continue
                low, high = test.ci_low, test.ci_high  # both None or both set (stats.paired_test)
                ci = (
                    MISSING if low is None or high is None else f"[{self.fmt(column, low, True)}, {self.fmt(column, high, True)}]"
                )
                out.append([
                    row.info.name, column.label, self.fmt(column, test.mean_diff, signed=True), ci, str(test.n),
                    _p(test.p_t), _p(test.p_wilcoxon), _test_verdict(test),
                ])
            if row.count_test is not None:
                ct = row.count_test
                out.append([
                    row.info.name, "Attack Acc@1, pooled images", f"{100 * ct.diff:+.1f}",
                    f"Wilson {_pct(ct.interval1)} vs {_pct(ct.interval2)}", f"{ct.k1}/{ct.n1} vs {ct.k2}/{ct.n2}",
                    _p(ct.p), MISSING, verdict(ct.p, 0),
                ])
        return out

    # -- documents ---------------------------------------------------------------------
    def main_markdown(self) -> str:
        header = self.header()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(self.cells(row)) + " |" for row in self.stats.rows]
        return "\n".join(lines) + "\n"

    def tests_markdown(self) -> str:
        header = [
            "Setting", "Metric", f"Δ vs {self.baseline}", "95 % CI of Δ", "Pairs", "p (paired t)", "p (Wilcoxon)", "Verdict",
        ]
        rows = self.test_rows()
        if not rows:
            return f"No paired results against `{self.baseline}` yet.\n"
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"

    def legend(self) -> str:
        return (
            f"Mean ± standard deviation over the complete seeds (column Seeds). In parentheses: the mean paired change "
            f"against `{self.baseline}` over the seeds both completed (percentage points for % columns); "
            f"`*` = p < {SIGNIFICANCE:g} in a two-sided paired t-test over seeds, otherwise the change is inside the noise. "
            f"{MISSING} = not measured. The pooled Acc@1 test treats every attack image as independent "
            "(two-proportion z-test) and ignores the spread between seeds; read it beside the paired test."
            + self._wilcoxon_floor() + "\n"
        )

    def _wilcoxon_floor(self) -> str:
        n = len(self.stats.manifest.seeds)
        if not 2 <= n <= 6:
            return ""
        # all n differences of one sign is the most extreme signed-rank outcome: p = 2 / 2ⁿ
        return f" With {n} seeds the Wilcoxon signed-rank test cannot go below p = {2 / 2**n:.3g}."

    def to_markdown(self, stamp: str = "") -> str:
        parts = [f"## {self.stats.manifest.name}\n", self.main_markdown(), "\n" + self.legend()]
        parts += ["\n### Tests against the baseline\n\n", self.tests_markdown()]
        if stamp:
            parts.append(f"\n{stamp}\n")
        return "".join(parts)

    def to_csv(self) -> str:
        """Raw numbers (fractions, not percentages), one row per setting and metric."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in self.stats.rows:
            common = {
                "setting": row.info.name, "defense": row.info.defense, "alpha": row.info.alpha, "status": row.status(),
                "fedls_version": row.provenance("fedls_version"), "git_commit": row.provenance("git_commit"),
            }
            for stats in row.metrics.values():
                writer.writerow({**common, **_metric_fields(stats)})
            if row.counts is not None:
                writer.writerow({**common, **_pooled_fields(row.counts, row.count_test)})
        return buffer.getvalue()

    def write(self, out: Path, stamp: str = "") -> tuple[Path, Path]:
        return write_atomic(out / "results.csv", self.to_csv()), write_atomic(out / "results.md", self.to_markdown(stamp))


def _p(p: float | None) -> str:
    if p is None:
        return MISSING
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _pct(interval: tuple[float, float]) -> str:
    return f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def _metric_fields(stats: MetricStats) -> dict[str, object]:
    column, summary, test = stats.column, stats.summary, stats.test
    fields: dict[str, object] = {
        "metric": column.key, "measure": "" if stats.measure is None else column.sources[stats.measure][0],
        "n": len(stats.values), "seeds": ";".join(map(str, stats.seeds)), "values": ";".join(repr(v) for v in stats.values),
    }
    if summary is not None:
        fields.update(mean=_num(summary.mean), sd=_num(summary.sd), ci_low=_num(summary.ci_low), ci_high=_num(summary.ci_high))
    if test is not None:
        fields.update(
            delta=_num(test.mean_diff), delta_ci_low=_num(test.ci_low), delta_ci_high=_num(test.ci_high), n_pairs=test.n,
            test="paired t", p=_num(test.p_t), p_wilcoxon=_num(test.p_wilcoxon),
            significant="" if test.p_t is None else str(test.significant).lower(),
        )
    return fields


def _pooled_fields(counts: tuple[int, int], test: CountTest | None) -> dict[str, object]:
    """Acc@1 as attack images pooled over seeds: the proportion with its Wilson interval (of this
    setting's own seeds), and the z-test over the seeds shared with the baseline."""
    k, n = counts
    low, high = wilson_interval(k, n)
    fields: dict[str, object] = {
        "metric": POOLED_KEY, "measure": f"{k}/{n} attack images", "n": n, "mean": _num(k / n),
        "ci_low": _num(low), "ci_high": _num(high),
    }
    if test is not None:
        fields.update(
            delta=_num(test.diff), n_pairs=f"{test.k1}/{test.n1} vs {test.k2}/{test.n2}", test="two-proportion z",
            p=_num(test.p), significant=str(test.significant).lower(),
        )
    return fields
