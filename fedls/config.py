"""The run configuration: one validated, serialisable object from CLI flags and/or TOML.

Declared with the one option schema (:mod:`fedls.schema`): each field's type, range, help and
help panel live here once; ``fedls simulate --help`` and the Flower app's run config are
generated from these declarations. Attack and defense sections are tables validated by their
own schemas (an attack adds options without touching this class); :func:`fedls.federation.
simulation.prepare` parses every section before anything is written or Ray starts.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import ConfigDict, Field, model_validator

from fedls.errors import ConfigError
from fedls.schema import Options
from fedls.smoothing import SmoothingSchedule
from fedls.threat_model import ClientRecipe

log = logging.getLogger(__name__)

AttackSwitch = Literal["none", "gradient", "model", "all"]


def read_toml(path: Path, what: str, hint: str = "check the path") -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a one-line :class:`ConfigError`."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; {hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder; pass a TOML file") from None
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


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` over ``base``; nested tables are merged key by key rather than replaced, so a
    flag changes one key of a file's ``[model_attack.ppa]`` and keeps the others."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _panel(name: str) -> dict[str, Any]:
    return {"panel": name}


class CentralDPOptions(Options):
    """Flower's server-side DP (clip each update, noise the aggregate): protects the released
    model, not the clients from the curious server."""

    noise_multiplier: float = Field(1.0, ge=0.0, description="Gaussian noise multiplier of the aggregate")
    clipping_norm: float = Field(1.0, gt=0.0, description="L2 clipping norm of each client update")


class RunConfig(Options):
    """Everything that defines a run. Same config + seed → same metrics on CPU."""

    # Mutable (checked on every assignment) so studies can derive settings from a base config.
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, validate_default=True)

    # -- output
    name: str | None = Field(
        None,
        description="Run directory name (must not exist); default <dataset>-a<α>-<defense>-s<seed>, numbered if taken",
        json_schema_extra=_panel("Output"),
    )
    run_dir: str = Field("runs", description="Folder that holds run directories", json_schema_extra=_panel("Output"))
    # -- data
    dataset: str = Field(
        "digits",
        description="digits (bundled), fashion-mnist, mnist, cifar10, cifar100, imagefolder, celeba",
        json_schema_extra=_panel("Data"),
    )
    data_dir: str | None = Field(
        None, description="Folder with the dataset's files (not needed for digits)", json_schema_extra=_panel("Data")
    )
    image_size: int | None = Field(
        None, ge=4, description="Resize images to this many pixels (default: the dataset's own)", json_schema_extra=_panel("Data")
    )
    num_classes: int | None = Field(
        None,
        ge=2,
        description="Identity datasets: keep the N identities with most images; the rest become public data",
        json_schema_extra=_panel("Data"),
    )
    private_cap: int | None = Field(
        None,
        ge=1,
        description="Cap the private training data at N images per class (Struppek et al. 2024, Appx. C.3)",
        json_schema_extra=_panel("Data"),
    )
    public_split: Literal["disjoint", "same-class"] = Field(
        "disjoint",
        description="Server's public data: disjoint (classes the private task lacks) or same-class (a weaker threat setting)",
        json_schema_extra=_panel("Data"),
    )
    partition: str = Field(
        "iid", description="How clients' shards are drawn: iid, dirichlet, by-class", json_schema_extra=_panel("Data")
    )
    dirichlet_beta: float = Field(
        0.5, gt=0.0, description="Dirichlet concentration β; smaller → more label skew", json_schema_extra=_panel("Data")
    )
    # -- model and training
    model: str = Field(
        "cnn",
        description="cnn, cnn-nobias, cnn-batchnorm, mlp, resnet18, resnet50, resnet152, facenet",
        json_schema_extra=_panel("Training"),
    )
    weights: str | None = Field(
        None, description="Local state_dict file to initialise the model from", json_schema_extra=_panel("Training")
    )
    clients: int = Field(10, ge=1, description="Number of clients (Flower SuperNodes)", json_schema_extra=_panel("Training"))
    fraction_train: float = Field(
        1.0, gt=0.0, le=1.0, description="Fraction of clients sampled each round", json_schema_extra=_panel("Training")
    )
    rounds: int = Field(20, ge=1, description="Federated rounds", json_schema_extra=_panel("Training"))
    local_epochs: int = Field(2, ge=1, description="Local epochs per round on each client", json_schema_extra=_panel("Training"))
    batch_size: int = Field(16, ge=1, description="Client mini-batch size", json_schema_extra=_panel("Training"))
    lr: float = Field(0.05, gt=0.0, description="Client learning rate", json_schema_extra=_panel("Training"))
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd", description="Client optimizer: sgd (momentum 0.9) or adam", json_schema_extra=_panel("Training")
    )
    weight_decay: float = Field(0.0, ge=0.0, description="Client weight decay", json_schema_extra=_panel("Training"))
    # Client-side gradient-norm clipping; 0 switches it off. On by default because negative α's
    # loss is unbounded below: without it, SGD clients diverged late in training (accuracy 0.92 →
    # 0.31 at round 12 on digits, 5 clients, lr 0.05) and a collapsed model passes for a defense.
    max_grad_norm: float = Field(
        1.0,
        ge=0.0,
        description="Client gradient-norm clipping, stabilises negative α; 0 = off",
        json_schema_extra=_panel("Training"),
    )
    # -- label smoothing (Struppek et al. 2024, Eq. 2–3) with the negative-α warm-up over rounds (§4.1)
    alpha: float = Field(
        0.0,
        le=1.0,
        description="Label-smoothing factor α ≤ 1; negative α penalises wrong-class confidence",
        json_schema_extra=_panel("Label smoothing"),
    )
    warmup_rounds: int = Field(
        3, ge=0, description="Negative α only: rounds without smoothing first", json_schema_extra=_panel("Label smoothing")
    )
    ramp_rounds: int = Field(
        3,
        ge=0,
        description="Negative α only: rounds of linear ramp to α after the warm-up",
        json_schema_extra=_panel("Label smoothing"),
    )
    # -- defense
    defense: str = Field(
        "none",
        description="Client training defense: none, mid, bido, dp (options: docs/defenses.md)",
        json_schema_extra=_panel("Defense"),
    )
    defense_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the chosen defense", json_schema_extra=_panel("Defense")
    )
    central_dp: dict[str, Any] = Field(
        default_factory=dict,
        description="Flower's server-side DP; a non-empty table switches it on",
        json_schema_extra=_panel("Defense"),
    )
    # -- the curious server
    attacks: AttackSwitch = Field(
        "all",
        description="Which attacks the curious server runs: none, gradient, model, all",
        json_schema_extra=_panel("Attacks"),
    )
    gradient_attack: dict[str, Any] = Field(
        default_factory=dict, description="Options of the attack on client updates", json_schema_extra=_panel("Gradient attack")
    )
    model_attack: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of model inversion on the global model",
        json_schema_extra=_panel("Model inversion"),
    )
    # -- execution
    seed: int = Field(
        0, ge=0, description="Seed for data split, partition, init and training", json_schema_extra=_panel("Execution")
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="auto (GPU when present), cpu or cuda",
        json_schema_extra=_panel("Execution"),
    )
    client_cpus: float | None = Field(
        None, gt=0.0, description="CPU cores per client (Ray resources); default 1", json_schema_extra=_panel("Execution")
    )
    client_gpus: float | None = Field(
        None,
        ge=0.0,
        description="GPUs per client; fractions share a GPU; default: shared evenly on CUDA",
        json_schema_extra=_panel("Execution"),
    )
    round_timeout: float = Field(
        600.0, gt=0.0, description="Seconds the server waits for a round's replies", json_schema_extra=_panel("Execution")
    )
    ray_address: str | None = Field(
        None, description="Address of an existing Ray cluster (default: start a local one)", json_schema_extra=_panel("Execution")
    )
    min_client_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Stop the run when fewer than this share of sampled clients reply",
        json_schema_extra=_panel("Execution"),
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.defense_options and self.defense == "none":
            raise ValueError("defense options were given without a defense; add --defense mid|bido|dp or drop them")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ValueError(f"run name {self.name!r} must be a plain folder name")
        return self

    # -- derived views -------------------------------------------------------------------
    def schedule(self) -> SmoothingSchedule:
        return SmoothingSchedule(self.alpha, self.warmup_rounds, self.ramp_rounds)

    def schedule_warning(self) -> str | None:
        """Why the α this config names would not be the α its clients train with: a negative α
        waits ``warmup_rounds`` rounds and ramps over ``ramp_rounds`` more, so a short run
        never smooths (or never reaches full α) while a comparison still labels it with α."""
        schedule = self.schedule()
        in_force = [schedule.alpha_at(r) for r in range(1, self.rounds + 1)]
        if self.alpha == 0 or in_force[-1] == self.alpha:
            return None
        if all(a == 0 for a in in_force):
            effect = f"never smooths: all {self.rounds} rounds are inside the {self.warmup_rounds}-round warm-up"
        else:
            ramp_end = self.warmup_rounds + self.ramp_rounds
            effect = f"reaches only α={in_force[-1]:.3g} by round {self.rounds} (the ramp ends at round {ramp_end})"
        return f"α={self.alpha:g} {effect}; raise --rounds or lower --warmup-rounds/--ramp-rounds"

    def recipe(self, alpha: float | None = None) -> ClientRecipe:
        """The clients' declared local training (with the α in force, default the target α)."""
        return ClientRecipe(
            optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, local_epochs=self.local_epochs,
            batch_size=self.batch_size, max_grad_norm=self.max_grad_norm,
            alpha=self.alpha if alpha is None else alpha, defense=self.defense,
        )

    def gradient_attack_on(self) -> bool:
        return self.attacks in ("gradient", "all")

    def model_attack_on(self) -> bool:
        return self.attacks in ("model", "all")

    def default_name(self) -> str:
        size = f"-n{self.private_cap}" if self.private_cap is not None else ""
        return f"{self.dataset}{size}-a{self.alpha:g}-{self.defense}-s{self.seed}"

    def check_registries(self) -> RunConfig:
        """Check the names against the registries and the option tables of the defense and
        central DP (attack sections are checked by :mod:`fedls.federation.observers`); warn
        when the α schedule never reaches the configured α (:meth:`schedule_warning`)."""
        from fedls.data import DATASETS, PARTITIONERS
        from fedls.defenses import DEFENSES, build_defense
        from fedls.models import MODELS

        DATASETS.get(self.dataset)
        MODELS.get(self.model)
        PARTITIONERS.get(self.partition)
        DEFENSES.get(self.defense)
        build_defense(self.defense, self.defense_options)
        if self.central_dp:
            CentralDPOptions.parse(self.central_dp, "central_dp")
        if (warning := self.schedule_warning()) is not None:
            log.warning("%s", warning)
        return self

    def central_dp_options(self) -> CentralDPOptions | None:
        return CentralDPOptions.parse(self.central_dp, "central_dp") if self.central_dp else None

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        return cls.parse(data, source)

    @classmethod
    def from_toml(cls, path: Path) -> RunConfig:
        data = read_toml(path, "config file")
        return cls.from_dict(data.get("run", data), source=str(path))

    def with_overrides(self, **overrides: Any) -> RunConfig:
        """A validated copy with the given (non-None) values replaced: CLI flags override a TOML file."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return type(self).parse({**self.model_dump(), **changes}, "flags")
