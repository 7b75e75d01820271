"""Registers each leakage observer kind under its run-config section."""

from __future__ import annotations

import torch

from fedls.assembly import build_global_model
from fedls.attacks.gradient.gradients import head_parameter_names
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.cache import check_cache_dir
from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.errors import ConfigError
from fedls.federation.observers import OBSERVERS, ObserverKind, TaskProgress
from fedls.federation.observers.base import RoundObserver
from fedls.federation.observers.gradient import build_gradient_observer
from fedls.federation.observers.model_inversion import ModelInversion, build_model_inversion_observer, parse_model_attack


def _validate_gradient(config: RunConfig, splits: DatasetSplits) -> None:
    options = GradientAttackOptions.parse(config.gradient_attack, "gradient_attack")
    if config.gradient_attack_on():
        try:
            head_parameter_names(build_global_model(config, splits))
        except ConfigError as exc:
            raise ConfigError(f"{exc}; or run with --attacks model|none") from None
    if options.malicious and options.clients > config.clients:
        raise ConfigError(f"gradient_attack: clients={options.clients} but the run has {config.clients} clients; lower it")


def _build_gradient(config: RunConfig, splits: DatasetSplits, device: torch.device) -> RoundObserver:
    options = GradientAttackOptions.parse(config.gradient_attack, "gradient_attack")
    return build_gradient_observer(options, config, splits, lambda: build_global_model(config, splits))


OBSERVERS.register("gradient_attack")(ObserverKind(_validate_gradient, _build_gradient))


def _validate_model(config: RunConfig, splits: DatasetSplits) -> None:
    options = parse_model_attack(config.model_attack, splits.num_classes)
    if len(splits.public) == 0:
        raise ConfigError(
            f"model inversion needs the server's public data for its prior, but {splits.name} has none with these "
            "settings; use fewer private classes (--num-classes) or --attacks gradient"
        )
    check_cache_dir(options.cache_dir)


def _build_model(config: RunConfig, splits: DatasetSplits, device: torch.device) -> RoundObserver:
    return build_model_inversion_observer(config.model_attack, splits, config.model, config.rounds, config.seed, device)


def _warm_model(config: RunConfig, splits: DatasetSplits, device: torch.device, progress: TaskProgress | None) -> None:
    inversion = ModelInversion(parse_model_attack(config.model_attack, splits.num_classes), splits, config.model, device,
                               progress=progress)
    _ = inversion.prior, inversion.judge  # trained and cached on first use, loaded afterwards


OBSERVERS.register("model_attack")(ObserverKind(_validate_model, _build_model, _warm_model))
