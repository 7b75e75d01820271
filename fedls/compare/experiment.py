"""Experiment files: a ``[base]`` table of run options shared by all settings and
``[[setting]]`` entries, each a name plus the options it changes.

::

    [experiment]
    out = "runs/defense-comparison"   # one folder per setting below this folder
    baseline = "no-defense"           # deltas and tests are taken against this setting (default: first)
    seeds = [0, 1, 2, 3, 4]           # every setting runs once per seed (default: [base].seed)

    [base]                            # any `fedls simulate` option (RunConfig key)
    dataset = "digits"
    rounds = 6

    [[setting]]
    name = "no-defense"

    [[setting]]
    name = "mid"
    defense = "mid"
    defense_options = { beta = 0.003 }

A setting may change only the training recipe (defense, its options, α and its warm-up,
and optimisation keys); data, partition, seed, rounds and attacks come from ``[base]`` so that
the comparison is fair. The file's shape is declared once with the option schema
(:mod:`fedls.schema`): a wrong type or an unknown key is a one-line error before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from fedls.config import RunConfig, parse_assignment, read_toml
from fedls.defenses import build_defense
from fedls.errors import ConfigError
from fedls.schema import Options, normalise_keys, one_line

# What a setting may not change: everything that defines the data, the federation or the attacks.
SHARED_ONLY = frozenset(
    {
        "name", "run_dir", "dataset", "data_dir", "image_size", "num_classes", "partition", "dirichlet_beta",
        "clients", "fraction_train", "rounds", "attacks", "gradient_attack", "model_attack", "seed", "weights",
    }
)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"


def _split_seed_list(value: Any) -> Any:
    """``"0,1,2"`` (the command line) and ``[0, 1, 2]`` (TOML) are the same list; digit strings
    become numbers here so that the elements themselves can stay strict (``true`` is no seed)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [int(v) if isinstance(v, str) and v.isdigit() else v for v in value]
    return value


def _distinct_seeds(value: list[int]) -> list[int]:
    if not value:
        raise ValueError("give at least one seed, e.g. 0,1,2,3,4")
    if len(set(value)) != len(value):
        raise ValueError(f"seeds must not repeat (got {value})")
    return value


SeedList = Annotated[
    list[Annotated[StrictInt, Field(ge=0)]],
    BeforeValidator(_split_seed_list),
    AfterValidator(_distinct_seeds),
    Field(description="seeds to repeat every setting with, e.g. 0,1,2,3,4"),
]


def check_out_folder(path: Path, key: str) -> Path:
    """An output folder may exist (rerunning resumes) but must not be a file."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file; pass a folder for the comparison's outputs")
    return path


class ExperimentMeta(Options):
    """The ``[experiment]`` table."""

    name: str | None = Field(None, description="name shown in tables (default: the file's stem)")
    out: str | None = Field(None, min_length=1, description="output folder (default: runs/<file stem>)")
    baseline: str | None = Field(None, description="setting that deltas and tests are taken against (default: the first)")
    description: str = Field("", description="free text")
    seeds: SeedList | None = None


class SettingEntry(Options):
    """One ``[[setting]]``: a name plus RunConfig keys. The keys beside ``name`` are allowed here
    and checked by :class:`~fedls.config.RunConfig` itself, the one schema of run options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, '.', '_', '+' or '-'")

    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ExperimentFile(Options):
    """A whole experiment file."""

    experiment: ExperimentMeta = Field(default_factory=ExperimentMeta)
    base: dict[str, Any] = Field(default_factory=dict, description="run options shared by every setting")
    setting: list[SettingEntry] = Field(default_factory=list, description="the compared settings")


@dataclass(frozen=True)
class Setting:
    """One row of the comparison: a name, what it changes, and its run configuration (the
    base seed; :meth:`Experiment.runs` derives one configuration per seed)."""

    name: str
    overrides: dict[str, Any]
    config: RunConfig


@dataclass
class Experiment:
    name: str
    out: Path
    settings: list[Setting]
    baseline: str
    seeds: list[int]
    base: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise ConfigError(f"no setting named {name!r}; the experiment has {', '.join(s.name for s in self.settings)}")

    def run_config(self, setting: Setting, seed: int) -> RunConfig:
        """One run: ``<out>/<setting>/seed-<n>``."""
        return setting.config.with_overrides(seed=seed, run_dir=str(self.out / setting.name), name=run_name(seed))

    def runs(self) -> Iterator[tuple[Setting, int, RunConfig]]:
        """Seed-major order: after an interruption the finished seeds hold every setting, so the
        partial results are still paired against the baseline."""
        for seed in self.seeds:
            for setting in self.settings:
                yield setting, seed, self.run_config(setting, seed)


def run_name(seed: int) -> str:
    return f"seed-{seed}"


def _validated(config: RunConfig) -> RunConfig:
    """Registry names, and the defense's options now rather than inside a client hours later."""
    config.check_registries()
    build_defense(config.defense, config.defense_options)
    return config


def _setting_config(base: RunConfig, entry: SettingEntry, source: str) -> RunConfig:
    normalised = normalise_keys(entry.overrides())
    shared = sorted(set(normalised) & SHARED_ONLY)
    if shared:
        raise ConfigError(f"{source}: setting {entry.name!r} changes {', '.join(shared)}; move shared options to the base table")
    merged = {**base.to_dict(), **normalised, "name": entry.name}
    if "defense" in normalised and "defense_options" not in normalised:
        merged["defense_options"] = {}  # options belong to the base's defense, not this one
    config = RunConfig.from_dict(merged, source=f"{source} setting {entry.name}")
    if config.defense == "dp" and "epsilon" in config.defense_options and "rounds" not in config.defense_options:
        # the ε budget is spread over every planned round (see fedls.defenses.dp)
        config = config.with_overrides(defense_options={**config.defense_options, "rounds": config.rounds})
    return _validated(config)


def build_experiment(
    base: Mapping[str, Any], settings: Sequence[Mapping[str, Any] | SettingEntry], out: Path, name: str = "comparison",
    baseline: str | None = None, source: str = "experiment", seeds: list[int] | None = None, description: str = "",
) -> Experiment:
    """Validate every setting up front so that a typo fails before hours of training."""
    if not settings:
        raise ConfigError(f"{source}: no setting entries; add at least two settings to compare")
    entries = [s if isinstance(s, SettingEntry) else SettingEntry.parse(s, f"{source} setting") for s in settings]
    base_dict = {k: v for k, v in normalise_keys(base).items() if k not in ("name", "run_dir")}
    if seeds is not None and "seed" in base_dict:
        raise ConfigError(f"{source}: give either base.seed or experiment.seeds (--seeds), not both")
    base_config = RunConfig.from_dict(base_dict, source=f"{source} base")
    built: list[Setting] = []
    for entry in entries:
        if any(s.name == entry.name for s in built):
            raise ConfigError(f"{source}: setting name {entry.name!r} is used twice; names must be unique")
        built.append(Setting(entry.name, entry.overrides(), _setting_config(base_config, entry, source)))
    chosen = baseline or built[0].name
    if chosen not in {s.name for s in built}:
        raise ConfigError(f"{source}: baseline {chosen!r} is not one of the settings; use a setting's name")
    return Experiment(
        name=name, out=check_out_folder(out, f"{source}: out"), settings=built, baseline=chosen,
        seeds=list(seeds) if seeds is not None else [base_config.seed], base=base_dict, description=description,
    )


def parse_experiment_file(data: Mapping[str, Any], source: str) -> ExperimentFile:
    """The file's tables against the schema; the first problem as one line naming the key."""
    try:
        return ExperimentFile.model_validate(normalise_keys(data))
    except ValidationError as exc:
        raise ConfigError(one_line(exc, source)) from None


def load_experiment(
    path: Path, out: Path | None = None, seeds: list[int] | None = None, overrides: Mapping[str, Any] | None = None,
) -> Experiment:
    """Read an experiment TOML file; ``out`` and ``seeds`` (e.g. from ``--out``, ``--seeds``)
    override the file's ``[experiment]`` values, ``overrides`` (non-None values) its ``[base]``
    before the settings are derived (so that, e.g., DP's ε is spread over the rounds that run)."""
    data = read_toml(path, "experiment file", "check the path (examples in experiments/)")
    parsed = parse_experiment_file(data, str(path))
    meta = parsed.experiment
    target = out or Path(meta.out or Path("runs") / path.stem)
    base = {**normalise_keys(parsed.base), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    chosen_seeds = seeds if seeds is not None else meta.seeds
    if seeds is not None and meta.seeds is None:
        base.pop("seed", None)  # --seeds replaces the file's single seed
    return build_experiment(
        base, list(parsed.setting), target, name=meta.name or path.stem, baseline=meta.baseline,
        source=str(path), seeds=chosen_seeds, description=meta.description,
    )


def parse_setting_spec(spec: str) -> dict[str, Any]:
    """``NAME=DEFENSE[:key=value,...][@ALPHA]`` from the command line, e.g. ``mid=mid:beta=0.01``,
    ``ls-neg=none@-0.05``; values are parsed as TOML scalars."""
    if "=" not in spec:
        raise ConfigError(f"setting {spec!r} must look like NAME=DEFENSE[:key=value,...][@ALPHA], e.g. mid=mid:beta=0.01")
    name, rest = spec.split("=", 1)
    alpha = None
    if "@" in rest:
        rest, alpha_text = rest.rsplit("@", 1)
        try:
            alpha = float(alpha_text)
        except ValueError:
            raise ConfigError(f"setting {spec!r}: alpha {alpha_text!r} is not a number") from None
    defense, _, opts = rest.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, value = parse_assignment(item, "mid=mid:beta=0.01")
        options[key] = value
    entry: dict[str, Any] = {"name": name.strip(), "defense": defense.strip() or "none", "defense_options": options}
    if alpha is not None:
        entry["alpha"] = alpha
    return entry


def quick_experiment(
    base: RunConfig, specs: list[str], out: Path, baseline: str | None = None, seeds: list[int] | None = None,
) -> Experiment:
    """An ad-hoc comparison from CLI flags: ``base`` for shared options and one spec per setting."""
    base_dict = {k: v for k, v in base.to_dict().items() if k not in ("name", "run_dir")}
    if seeds is not None:
        base_dict.pop("seed", None)
    return build_experiment(
        base_dict, [parse_setting_spec(s) for s in specs], out, name=out.name, baseline=baseline, source="--setting", seeds=seeds,
    )
