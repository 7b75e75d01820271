"""The results table (CSV and Markdown) in the layout of seed 001, Table 1: each metric of
each setting and its change against the baseline. A metric a run did not produce is shown
as "–"; nothing is filled in or estimated."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedls.run_dir import RunDirectory

MISSING = "–"


@dataclass(frozen=True)
class Column:
    """One metric: a label, the metrics.jsonl keys to look for (first present wins), whether it
    is shown as a percentage, and which direction is better for the attacker/defender reader."""

    key: str
    label: str
    sources: tuple[str, ...]
    percent: bool = False
    digits: int = 3


COLUMNS: tuple[Column, ...] = (
    Column("test_acc", "Test Acc ↑", ("global/accuracy",), percent=True),
    Column("ece", "ECE ↓", ("global/ece",)),
    Column("attack_acc1", "Attack Acc@1", ("mia/acc1",), percent=True),
    Column("attack_acc5", "Attack Acc@5", ("mia/acc5",), percent=True),
    # δ_face (FaceNet distance) when the attack computed it, else the evaluation model's δ_eval
    Column("delta", "δ_face/δ_eval", ("mia/delta_face", "mia/delta_eval"), digits=2),
    Column("xi_train", "ξ_train", ("mia/xi_train",), percent=True),
    Column("xi_test", "ξ_test", ("mia/xi_test",), percent=True),
    # gradient inversion (fedls.attacks.gradient.observer): share of attacked client updates whose
    # soft label was recovered within tolerance, and PSNR of the soft-label reconstructions
    Column("label_recovery", "Label recovery", ("gradient/success_rate",), percent=True),
    Column("psnr", "PSNR (dB)", ("gradient/recon_psnr",), digits=2),
    Column("epsilon", "DP ε", ("clients/epsilon",), digits=2),
)


def latest_metrics(run: RunDirectory) -> dict[str, float]:
    """For every key, its value in the latest round that logged it (attacks may run every k rounds)."""
    merged: dict[str, float] = {}
    for record in run.metrics():
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                merged[key] = float(value)
    return merged


def pick(metrics: dict[str, float], column: Column) -> tuple[float | None, str | None]:
    for source in column.sources:
        if source in metrics:
            return metrics[source], source
    return None, None


@dataclass
class Row:
    setting: str
    defense: str
    alpha: float
    status: str
    values: dict[str, float | None]
    deltas: dict[str, float | None]


@dataclass
class ResultTable:
    baseline: str
    rows: list[Row]
    columns: Sequence[Column] = COLUMNS

    def format_value(self, column: Column, value: float | None) -> str:
        if value is None:
            return MISSING
        return f"{100 * value:.1f}%" if column.percent else f"{value:.{column.digits}f}"

    def format_delta(self, column: Column, delta: float | None) -> str:
        if delta is None:
            return ""
        return f" ({100 * delta:+.1f})" if column.percent else f" ({delta:+.{column.digits}f})"

    def cells(self, row: Row) -> list[str]:
        """Display cells: value and, for non-baseline rows, the change against the baseline."""
        out = [row.setting, row.defense, f"{row.alpha:g}", row.status]
        for column in self.columns:
            value = self.format_value(column, row.values[column.key])
            if row.setting != self.baseline and row.values[column.key] is not None:
                value += self.format_delta(column, row.deltas[column.key])
            out.append(value)
        return out

    def header(self) -> list[str]:
        return ["Setting", "Defense", "α", "Status", *(c.label for c in self.columns)]

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.header()) + " |", "|" + "---|" * len(self.header())]
        lines += ["| " + " | ".join(self.cells(row)) + " |" for row in self.rows]
        note = (
            f"\nChanges in parentheses are against `{self.baseline}` (percentage points for % columns). "
            f"{MISSING} = not measured in this run.\n"
        )
        return "\n".join(lines) + "\n" + note

    def to_csv(self) -> str:
        """Raw numbers (fractions, not percentages) and their deltas; empty cells where missing."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        keys = [c.key for c in self.columns]
        writer.writerow(["setting", "defense", "alpha", "status", *keys, *(f"{k}_delta" for k in keys)])
        for row in self.rows:
            values = ["" if row.values[k] is None else repr(row.values[k]) for k in keys]
            deltas = ["" if row.deltas[k] is None else repr(row.deltas[k]) for k in keys]
            writer.writerow([row.setting, row.defense, row.alpha, row.status, *values, *deltas])
        return buffer.getvalue()

    def write(self, out: Path) -> tuple[Path, Path]:
        csv_path, md_path = out / "results.csv", out / "results.md"
        csv_path.write_text(self.to_csv())
        md_path.write_text(self.to_markdown())
        return csv_path, md_path


def build_table(entries: Sequence[tuple[str, str, float, str, dict[str, float]]], baseline: str) -> ResultTable:
    """``entries``: (setting, defense, α, status, latest metrics) per setting, in display order."""
    base_metrics = next((m for name, _, _, _, m in entries if name == baseline), {})
    rows = []
    for name, defense, alpha, status, metrics in entries:
        values: dict[str, float | None] = {}
        deltas: dict[str, float | None] = {}
        for column in COLUMNS:
            value, source = pick(metrics, column)
            base_value = base_metrics.get(source) if source else None  # same source key, or no delta
            values[column.key] = value
            deltas[column.key] = value - base_value if value is not None and base_value is not None else None
        rows.append(Row(name, defense, alpha, status, values, deltas))
    return ResultTable(baseline, rows)


def row_values(table: ResultTable) -> list[dict[str, Any]]:
    """Plain dicts for the plot and the HParams export."""
    return [{"setting": r.setting, "defense": r.defense, "alpha": r.alpha, **r.values} for r in table.rows]
