"""Options of the gradient attack (the ``gradient_attack`` section of a run config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from fedls.errors import ConfigError

PROBE_MODES = ("fedsgd", "fedavg")


@dataclass(frozen=True)
class GradientAttackOptions:
    """``probe``: what the attacked clients send — ``fedsgd`` (the gradient on ``probe_batch``
    samples) or ``fedavg`` (the server estimates the gradient from the weight update).
    ``clients``: clients attacked per round. ``mixup``: Beta parameter ``a`` of the probe's
    mixup coefficient, 0 = off (then the attack assumes label smoothing). ``recon_steps``: Adam
    steps of image reconstruction, 0 = off. ``tv_weight`` / ``feature_weight`` / ``recon_lr``:
    reconstruction loss weights and step size. ``every``: attack every n-th round.
    ``grid``: how many attacked clients' images go into the logged grid.
    ``nonnegative_features``: attacker assumption that the head input is post-ReLU (true for
    fedls' CNN and MLP); used only to break ties between λ roots of a bias-free head."""

    probe: str = "fedsgd"
    clients: int = 1
    probe_batch: int = 1
    mixup: float = 0.0
    recon_steps: int = 100
    recon_lr: float = 0.1
    tv_weight: float = 1e-2
    feature_weight: float = 0.1
    every: int = 1
    grid: int = 4
    seed: int = 0
    nonnegative_features: bool = True

    @property
    def augmentation(self) -> str:
        return "mixup" if self.mixup > 0 else "smoothing"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GradientAttackOptions:
        """Validate a config section; keys may use ``-`` or ``_``. ``enabled`` is accepted and ignored."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key == "enabled":
                continue
            if key not in known:
                raise ConfigError(
                    f"unknown gradient_attack option {raw_key!r}; known options: {', '.join(sorted(known))}"
                )
            default = known[key].default
            if isinstance(default, bool):
                if not isinstance(value, bool) and str(value).lower() not in ("true", "false", "1", "0"):
                    raise ConfigError(f"gradient_attack option {raw_key!r} must be true or false (got {value!r})")
                kwargs[key] = value if isinstance(value, bool) else str(value).lower() in ("true", "1")
                continue
            try:
                kwargs[key] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                raise ConfigError(f"gradient_attack option {raw_key!r} must be a {type(default).__name__} (got {value!r})") from None
            if isinstance(default, int) and float(value) != int(float(value)):
                raise ConfigError(f"gradient_attack option {raw_key!r} must be a whole number (got {value!r})")
        options = cls(**kwargs)
        options.validate()
        return options

    def validate(self) -> None:
        if self.probe not in PROBE_MODES:
            raise ConfigError(f"gradient_attack probe must be one of {', '.join(PROBE_MODES)} (got {self.probe!r})")
        for name in ("clients", "probe_batch", "every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gradient_attack {name} must be >= 1 (got {getattr(self, name)})")
        for name in ("mixup", "tv_weight", "feature_weight", "recon_steps", "grid"):
            if getattr(self, name) < 0:
                raise ConfigError(f"gradient_attack {name} must be >= 0 (got {getattr(self, name)}; 0 switches it off)")
        if not self.recon_lr > 0:
            raise ConfigError(f"gradient_attack recon_lr must be > 0 (got {self.recon_lr})")

    def probe_config(self) -> dict[str, Any]:
        """Extra train config for an attacked client (read by the client's probe)."""
        return {"probe": self.probe, "probe-batch": self.probe_batch, "probe-mixup": float(self.mixup)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
