"""Does a setting's effect differ between two studies?

Two comparisons that run the same settings under different conditions — e.g. fedls' default
client recipe (gradient clipping) and Struppek et al.'s (2024) recipe (Adam, no clipping) —
each measure a setting's effect as its change against their own baseline, seed by seed. This
module sets those two effects side by side and tests their difference with Welch's t-test
(Welch 1947) over the per-seed changes. The two studies' runs are independent (another recipe
trains another model even from the same seed), so the test is unpaired; with 5 seeds a side
only a large difference of effects can reach significance, and a difference inside the noise
is reported as such, never as "no difference".
"""

from __future__ import annotations

from collections.abc import Sequence

from fedls.compare.claims import format_change, format_p, format_signed
from fedls.compare.results import ComparisonStats
from fedls.stats import SIGNIFICANCE, welch_test

CONTRAST_METRICS = ("attack_acc1", "test_acc")  # leakage with the utility it came with


def effect_per_seed(stats: ComparisonStats, setting: str, metric: str) -> list[float]:
    """The setting's change against the study's baseline for every seed both completed; empty
    when the two were measured differently (see ``Column.sources``) or not at all."""
    own, base = stats.row(setting).metrics[metric], stats.row(stats.baseline).metrics[metric]
    if own.measure is None or own.measure != base.measure:
        return []
    base_by_seed = dict(zip(base.seeds, base.values, strict=True))
    return [value - base_by_seed[seed] for seed, value in zip(own.seeds, own.values, strict=True) if seed in base_by_seed]


def contrast_markdown(first: tuple[str, ComparisonStats], second: tuple[str, ComparisonStats],
                      metrics: Sequence[str] = CONTRAST_METRICS) -> str:
    """One row per (setting, metric) that both studies measured against their baselines."""
    (name_a, a), (name_b, b) = first, second
    in_b = {row.info.name for row in b.rows}
    rows = []
    for row in a.rows:
        setting = row.info.name
        if setting not in in_b or setting in (a.baseline, b.baseline):
            continue
        for metric in metrics:
            own_a, own_b = row.metrics[metric], b.row(setting).metrics[metric]
            if own_a.measure != own_b.measure:
                continue  # e.g. δ_face in one study and δ_eval in the other: not the same quantity
            effect_a, effect_b = effect_per_seed(a, setting, metric), effect_per_seed(b, setting, metric)
            if not effect_a or not effect_b:
                continue
            test = welch_test(effect_a, effect_b)
            difference = format_signed(test.diff, test.ci_low, test.ci_high, own_a.column)
            if test.p is None:
                verdict = "not testable"
            else:
                verdict = "**differs**" if test.significant else "inside the noise"
            # each study's own paired change against its baseline: the same per-seed differences
            rows.append(
                f"| {setting} | {own_a.column.label} | {format_change(own_a)} ({len(effect_a)}) "
                f"| {format_change(own_b)} ({len(effect_b)}) | {difference} | {format_p(test.p)} | {verdict} |"
            )
    if not rows:
        return f"`{name_a}` and `{name_b}` share no setting measured against their baselines.\n"
    header = (
        f"| Setting | Metric | Δ in `{name_a}` [95 % CI] (seeds) | Δ in `{name_b}` [95 % CI] (seeds) "
        "| Difference of the Δs [95 % CI] | p (Welch) | Verdict |\n|---|---|---|---|---|---|---|\n"
    )
    legend = (
        f"\nΔ: the setting's change against its own study's baseline (`{a.baseline}`, `{b.baseline}`), per seed, in "
        "percentage points for % metrics; the difference is the first study's mean Δ minus the second's, tested "
        f"with Welch's t-test over the per-seed Δs (p < {SIGNIFICANCE:g}: *differs*; otherwise the two effects are "
        "not told apart at these seeds, which is not evidence that they are equal). Each row is its own test, so "
        f"about one row in {round(1 / SIGNIFICANCE)} reaches p < {SIGNIFICANCE:g} by chance alone.\n"
    )
    return header + "\n".join(rows) + "\n" + legend
