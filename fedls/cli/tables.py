"""The grouped headline table of one run, shown by `fedls simulate` at the end of a run."""

from __future__ import annotations

from rich.console import JustifyMethod
from rich.table import Table

from fedls.studies.reports import GROUPS, RunReport, fmt, format_baseline, format_value

COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("metric", "left"), ("↑/↓", "center"), ("final", "right"), ("round", "right"), ("mean over rounds", "right"),
    ("baseline", "left"),
)


def report_table(report: RunReport, title: str) -> Table:
    """Utility, gradient leakage and model-inversion leakage, each a section of one table;
    per-client values are not shown (they stay in metrics.jsonl)."""
    table = Table(title=title, caption="↑/↓ on leakage rows: the direction that is worse for privacy; "
                                       "on utility rows: the direction that is better for the model")
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify)
    for group in GROUPS:
        rows = report.group(group)
        if not rows:
            continue
        table.add_section()
        table.add_row(f"[bold]{group}[/]", "", "", "", "", "")
        for row in rows:
            mean = "" if row.mean is None else f"{fmt(row.mean)} ({row.rounds_measured})"
            table.add_row(f"  {row.label}", row.arrow, format_value(row), str(row.round), mean, format_baseline(row))
    return table
