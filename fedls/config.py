"""The run configuration: one validated, serialisable object from CLI flags and/or TOML."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from fedls.errors import ConfigError
from fedls.smoothing import SmoothingSchedule, validate_alpha


def read_toml(path: Path, what: str, hint: str = "check the path") -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a one-line :class:`ConfigError`."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; {hint}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}; fix the TOML") from None


def parse_assignment(pair: str, example: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from a command line; the value is read as a TOML scalar or array (as in a
    config file: ``0.01``, ``true``, ``[1, 2]``), anything else stays text."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{pair!r} must look like KEY=VALUE, e.g. {example}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


@dataclass
class RunConfig:
    """Everything that defines a run. Same config + seed → same metrics on CPU.

    Attack and defense sections are plain tables validated by their own modules, so a new
    attack adds options without touching this class.
    """

    # where
    name: str | None = None  # run directory name; default: <dataset>-a<alpha>-<defense>-s<seed>
    run_dir: str = "runs"
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    num_classes: int | None = None
    samples_per_class: int | None = None  # cap the private training data (seed 001 Appx. C.3)
    partition: str = "iid"
    dirichlet_beta: float = 0.5
    # model and training
    model: str = "cnn"
    weights: str | None = None
    clients: int = 10
    fraction_train: float = 1.0
    rounds: int = 20
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    # Client-side gradient-norm clipping; 0 switches it off. On by default because negative α's
    # loss is unbounded below: without it, SGD clients diverged late in training (accuracy 0.92 →
    # 0.31 at round 12 on digits, 5 clients, lr 0.05) and a collapsed model passes for a defense.
    max_grad_norm: float = 1.0
    # label smoothing (seed 001 Eq. 2–3) with the negative-α warm-up over rounds (§4.1)
    alpha: float = 0.0
    warmup_rounds: int = 3
    ramp_rounds: int = 3
    # defense
    defense: str = "none"
    defense_options: dict[str, Any] = field(default_factory=dict)
    # Flower's server-side DP (clip + noise the aggregate): protects the released model, not the
    # clients from the curious server. Non-empty table = on: noise_multiplier, clipping_norm.
    central_dp: dict[str, Any] = field(default_factory=dict)
    # attacks run by the curious server
    gradient_attack: dict[str, Any] = field(default_factory=dict)
    model_attack: dict[str, Any] = field(default_factory=dict)
    # execution
    seed: int = 0
    device: str = "auto"
    client_cpus: float | None = None
    client_gpus: float | None = None
    round_timeout: float = 600.0

    def schedule(self) -> SmoothingSchedule:
        return SmoothingSchedule(self.alpha, self.warmup_rounds, self.ramp_rounds)

    def default_name(self) -> str:
        size = f"-n{self.samples_per_class}" if self.samples_per_class is not None else ""
        return f"{self.dataset}{size}-a{self.alpha:g}-{self.defense}-s{self.seed}"

    def validate(self) -> RunConfig:
        """Check every range and name; raise :class:`ConfigError` with the fix."""
        from fedls.data import DATASETS, PARTITIONERS
        from fedls.defenses import DEFENSES
        from fedls.models import MODELS

        validate_alpha(self.alpha)
        positive = {"clients": self.clients, "rounds": self.rounds, "local_epochs": self.local_epochs, "batch_size": self.batch_size}
        for key, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key.replace('_', '-')} must be a whole number >= 1 (got {value})")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            raise ConfigError(f"weight-decay must be >= 0 (got {self.weight_decay})")
        if not self.max_grad_norm >= 0:
            raise ConfigError(f"max-grad-norm must be >= 0 (got {self.max_grad_norm}); 0 switches clipping off")
        if not 0 < self.fraction_train <= 1:
            raise ConfigError(f"fraction-train must be in (0, 1] (got {self.fraction_train})")
        if self.warmup_rounds < 0 or self.ramp_rounds < 0:
            raise ConfigError("warmup-rounds and ramp-rounds must be >= 0")
        if self.samples_per_class is not None and (not isinstance(self.samples_per_class, int) or self.samples_per_class < 1):
            raise ConfigError(f"samples-per-class must be a whole number >= 1 (got {self.samples_per_class})")
        if self.image_size is not None and self.image_size < 4:
            raise ConfigError(f"image-size must be >= 4 px (got {self.image_size})")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose sgd or adam")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        if self.round_timeout <= 0:
            raise ConfigError("round-timeout must be > 0 seconds")
        DATASETS.get(self.dataset)
        MODELS.get(self.model)
        PARTITIONERS.get(self.partition)
        DEFENSES.get(self.defense)
        if self.central_dp:
            from strategies.central_dp import central_dp_options

            central_dp_options(self.central_dp)
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ConfigError(f"run name {self.name!r} must be a plain folder name")
        return self

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        known = {f.name for f in fields(cls)}
        normalised = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(normalised) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; see `fedls simulate --help`")
        return cls(**normalised)

    @classmethod
    def from_toml(cls, path: Path) -> RunConfig:
        data = read_toml(path, "config file")
        return cls.from_dict(data.get("run", data), source=str(path))

    def with_overrides(self, **overrides: Any) -> RunConfig:
        """A copy with the given (non-None) values replaced: CLI flags override a TOML file."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
