"""`fedls compare`: run settings that differ only in the defense, then tabulate and plot them.

Seed 001, Table 1: the same data, partition, seed, rounds and attacks for every setting, each
metric reported with its change against the no-defense baseline.
"""

from __future__ import annotations

from fedls.compare.experiment import Experiment, Setting, load_experiment, quick_experiment
from fedls.compare.runner import ComparisonResult, ProgressEvent, SettingOutcome, run_comparison
from fedls.compare.table import COLUMNS, ResultTable, build_table

__all__ = [
    "COLUMNS",
    "ComparisonResult",
    "Experiment",
    "ProgressEvent",
    "ResultTable",
    "Setting",
    "SettingOutcome",
    "build_table",
    "load_experiment",
    "quick_experiment",
    "run_comparison",
]
