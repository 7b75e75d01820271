"""Experiment files: a ``[base]`` table of run options shared by all settings and
``[[setting]]`` entries, each a name plus the options it changes.

::

    [experiment]
    out = "runs/defense-comparison"   # one run directory per setting below this folder
    baseline = "no-defense"           # deltas are taken against this setting (default: first)

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
the comparison is fair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedls.config import RunConfig, parse_assignment, read_toml
from fedls.defenses import build_defense
from fedls.errors import ConfigError

# What a setting may not change: everything that defines the data, the federation or the attacks.
SHARED_ONLY = frozenset(
    {
        "name", "run_dir", "dataset", "data_dir", "image_size", "num_classes", "partition", "dirichlet_beta",
        "clients", "fraction_train", "rounds", "gradient_attack", "model_attack", "seed", "weights",
    }
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class Setting:
    """One row of the comparison: a name, what it changes, and its full run configuration."""

    name: str
    overrides: dict[str, Any]
    config: RunConfig


@dataclass
class Experiment:
    name: str
    out: Path
    settings: list[Setting]
    baseline: str
    base: dict[str, Any] = field(default_factory=dict)

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise ConfigError(f"no setting named {name!r}; the experiment has {', '.join(s.name for s in self.settings)}")


def _setting_config(base: RunConfig, name: str, overrides: dict[str, Any], out: Path, source: str) -> RunConfig:
    normalised = {k.replace("-", "_"): v for k, v in overrides.items()}
    shared = sorted(set(normalised) & SHARED_ONLY)
    if shared:
        raise ConfigError(f"{source}: setting {name!r} changes {', '.join(shared)}; move shared options to [base]")
    merged = {**base.to_dict(), **normalised, "name": name, "run_dir": str(out)}
    if "defense" in normalised and "defense_options" not in normalised:
        merged["defense_options"] = {}  # options belong to the base's defense, not this one
    config = RunConfig.from_dict(merged, source=f"{source} [setting {name}]")
    if config.defense == "dp" and "epsilon" in config.defense_options and "rounds" not in config.defense_options:
        # the ε budget is spread over every planned round (see fedls.defenses.dp)
        config.defense_options = {**config.defense_options, "rounds": config.rounds}
    config.validate()
    build_defense(config.defense, config.defense_options)  # option errors now, not inside a client
    return config


def build_experiment(
    base: dict[str, Any], settings: list[dict[str, Any]], out: Path, name: str = "comparison",
    baseline: str | None = None, source: str = "experiment",
) -> Experiment:
    """Validate every setting up front so that a typo fails before hours of training."""
    if not settings:
        raise ConfigError(f"{source}: no [[setting]] entries; add at least two settings to compare")
    base_config = RunConfig.from_dict({k: v for k, v in base.items() if k not in ("name", "run_dir")}, source=f"{source} [base]")
    built: list[Setting] = []
    for entry in settings:
        entry = dict(entry)
        setting_name = entry.pop("name", None)
        if not isinstance(setting_name, str) or not NAME_PATTERN.match(setting_name):
            raise ConfigError(f"{source}: every setting needs a name of letters, digits, '.', '_', '+' or '-' (got {setting_name!r})")
        if any(s.name == setting_name for s in built):
            raise ConfigError(f"{source}: setting name {setting_name!r} is used twice; names must be unique")
        built.append(Setting(setting_name, entry, _setting_config(base_config, setting_name, entry, out, source)))
    chosen = baseline or built[0].name
    if chosen not in {s.name for s in built}:
        raise ConfigError(f"{source}: baseline {chosen!r} is not one of the settings; use a setting's name")
    return Experiment(name=name, out=out, settings=built, baseline=chosen, base=dict(base))


def load_experiment(path: Path, out: Path | None = None) -> Experiment:
    """Read an experiment TOML file; ``out`` (e.g. from ``--out``) overrides its output folder."""
    data = read_toml(path, "experiment file", "check the path (examples in experiments/)")
    unknown = sorted(set(data) - {"experiment", "base", "setting"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; use [experiment], [base] and [[setting]]")
    meta = data.get("experiment", {})
    extra = sorted(set(meta) - {"name", "out", "baseline", "description"})
    if extra:
        raise ConfigError(f"{path}: unknown [experiment] key(s) {', '.join(extra)}; use name, out, baseline, description")
    target = out or Path(meta.get("out", Path("runs") / path.stem))
    return build_experiment(
        data.get("base", {}), data.get("setting", []), target, name=str(meta.get("name", path.stem)),
        baseline=meta.get("baseline"), source=str(path),
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


def quick_experiment(base: RunConfig, specs: list[str], out: Path, baseline: str | None = None) -> Experiment:
    """An ad-hoc comparison from CLI flags: ``base`` for shared options and one spec per setting."""
    base_dict = {k: v for k, v in base.to_dict().items() if k not in ("name", "run_dir")}
    return build_experiment(base_dict, [parse_setting_spec(s) for s in specs], out, name=out.name, baseline=baseline, source="--setting")
