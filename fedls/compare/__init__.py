"""`fedls compare`: run settings that differ only in the defense, once per seed, then tabulate,
test and plot them.

Struppek et al. (2024), Table 1: the same data, partition, seed, rounds and attacks for every setting, each
metric reported with its change against the no-defense baseline — here as mean ± sd over
seeds with paired tests, so that a difference is read only when it is outside the noise.
"""

from __future__ import annotations

from fedls.compare.experiment import Experiment, Setting, load_experiment, quick_experiment
from fedls.compare.options import CompareOptions, plan_comparison
from fedls.compare.results import COLUMNS, ComparisonStats, load_results
from fedls.compare.runner import (
    CheckedComparison,
    ComparisonResult,
    ProgressEvent,
    RunOutcome,
    check_comparison,
    run_comparison,
)
from fedls.compare.table import ResultTable

__all__ = [
    "COLUMNS",
    "CheckedComparison",
    "CompareOptions",
    "ComparisonResult",
    "ComparisonStats",
    "Experiment",
    "ProgressEvent",
    "ResultTable",
    "RunOutcome",
    "Setting",
    "check_comparison",
    "load_experiment",
    "load_results",
    "plan_comparison",
    "quick_experiment",
    "run_comparison",
]
