"""The options of ``fedls compare``, declared with the one option schema (:mod:`fedls.schema`),
and how they become an :class:`~fedls.compare.experiment.Experiment`.

The command line only collects flags into :class:`CompareOptions`; every check of the options
(which mode, seeds, the output folder, overrides of the experiment file) happens here, and
:func:`~fedls.compare.runner.check_comparison` then checks the plan against the disk and the
machine, before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from fedls.compare.experiment import Experiment, SeedList, check_out_folder, load_experiment, quick_experiment
from fedls.config import RunConfig
from fedls.schema import Options

DEFAULT_OUT = Path("runs") / "compare"


class CompareOptions(Options):
    experiment: Path | None = Field(None, description="experiment TOML ([experiment], [base], [[setting]])")
    settings: list[str] = Field(default_factory=list, description="ad-hoc settings NAME=DEFENSE[:key=value,...][@ALPHA]")
    out: Path | None = Field(None, description="output folder (rerunning resumes)")
    baseline: str | None = Field(None, description="setting that changes and tests are taken against")
    config: Path | None = Field(None, description="ad-hoc mode: TOML with the shared run options")
    dataset: str | None = None
    clients: int | None = Field(None, ge=1)
    rounds: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    seeds: SeedList | None = None
    device: str | None = Field(None, pattern=r"^(auto|cpu|cuda(:\d+)?)$")

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if (self.experiment is None) == (not self.settings):
            raise ValueError("pass either --experiment FILE or at least two --setting entries (not both)")
        if self.experiment is None and len(self.settings) < 2:
            raise ValueError("give at least two --setting entries to compare")
        if self.experiment is not None and self.config is not None:
            raise ValueError("--config is for ad-hoc --setting comparisons; put shared options in the file's base table")
        if self.seed is not None and self.seeds is not None:
            raise ValueError("give --seed or --seeds, not both")
        return self

    def seed_list(self) -> list[int] | None:
        if self.seeds is not None:
            return list(self.seeds)
        return [self.seed] if self.seed is not None else None


def plan_comparison(options: CompareOptions) -> Experiment:
    """The validated experiment: every setting and seed is checked before the first run starts."""
    if options.out is not None:
        check_out_folder(options.out, "compare.out")
    shared = {"dataset": options.dataset, "clients": options.clients, "rounds": options.rounds, "device": options.device}
    seeds = options.seed_list()
    if options.experiment is not None:
        plan = load_experiment(options.experiment, options.out, seeds=seeds, overrides=shared)
    else:
        base = (RunConfig.from_toml(options.config) if options.config else RunConfig()).with_overrides(**shared)
        plan = quick_experiment(base, list(options.settings), options.out or DEFAULT_OUT, options.baseline, seeds=seeds)
    if options.baseline is not None and options.experiment is not None:
        plan.setting(options.baseline)  # a one-line error for an unknown name
        plan.baseline = options.baseline
    return plan
