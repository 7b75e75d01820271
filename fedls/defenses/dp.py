"""Local DP-SGD on every client with Opacus, with ε composed across federated rounds.

Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016): per-sample gradients are
clipped to ``max_grad_norm``, Gaussian noise with standard deviation
``noise_multiplier · max_grad_norm`` is added, batches are Poisson-sampled with rate
``q = batch_size / n``. Each client is its own privacy unit (record-level DP of its shard);
the noise is added before the update leaves the client, so it also holds against a curious
server, unlike server-side (central) DP wrappers.

Accounting across rounds: a client builds a fresh ``PrivacyEngine`` every round (the model
arrives fresh from the server), so the RDP accountant's history ``[(σ, q, steps), ...]`` is
kept in the client's persistent ``ctx.state`` and composed: the ε reported after round r
covers every step the client has taken in rounds 1..r. Every Poisson draw counts as a step,
including the empty batches the training loop skips (they still were a use of the mechanism).
With a target ε the noise multiplier is solved once, for the total steps planned over all
rounds, and stored, so the budget is reached exactly at the last planned round (a client
sampled in fewer rounds ends below it).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader

from fedls.defenses import DEFENSES
from fedls.defenses.base import Defense, TrainingContext
from fedls.errors import ConfigError
from fedls.models.base import Classifier
from fedls.schema import Options

log = logging.getLogger(__name__)

HISTORY_KEY = "dp_history"
NOISE_KEY = "dp_noise_multiplier"


def epsilon_for(history: list[tuple[float, float, int]], delta: float) -> float:
    """ε of an RDP accountant with this history (Opacus' own conversion)."""
    from opacus.accountants import RDPAccountant

    if not history:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(accountant.get_epsilon(delta))


def extend_history(history: list[list[float]], noise: float, rate: float, steps: int) -> list[list[float]]:
    """Append ``steps`` steps at ``(noise, rate)``, merging with the last entry like Opacus does."""
    out = [list(h) for h in history]
    if out and out[-1][0] == noise and out[-1][1] == rate:
        out[-1][2] = int(out[-1][2]) + steps
    elif steps > 0:
        out.append([noise, rate, steps])
    return out


class DPDefense(Defense):
    name = "dp"

    def __init__(
        self,
        max_grad_norm: float,
        delta: float,
        noise_multiplier: float | None,
        target_epsilon: float | None,
        planned_rounds: int | None,
    ) -> None:
        self.max_grad_norm = max_grad_norm
        self.delta = delta
        self.noise_multiplier = noise_multiplier
        self.target_epsilon = target_epsilon
        self.planned_rounds = planned_rounds
        self._engine: Any = None
        self._round: tuple[float, float, int] | None = None

    def prepare_model(self, model: Classifier) -> Classifier:
        """Replace what Opacus cannot train privately (BatchNorm → GroupNorm)."""
        from opacus.validators import ModuleValidator

        if ModuleValidator.validate(model, strict=False):
            model = ModuleValidator.fix(model)
            errors = ModuleValidator.validate(model, strict=False)
            if errors:
                raise ConfigError(f"defense 'dp': Opacus cannot train this model privately ({errors[0]}); pick another --model")
        return model

    def _noise(self, ctx: TrainingContext, rate: float, steps_per_round: int) -> float:
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        if NOISE_KEY in ctx.state:  # solved once, at the client's first round
            return float(ctx.state[NOISE_KEY])
        from opacus.accountants.utils import get_noise_multiplier

        rounds = self.planned_rounds or getattr(ctx, "total_rounds", None)
        if not rounds:
            raise ConfigError("defense 'dp': a target epsilon needs the planned number of rounds; set defense_options.rounds")
        noise = float(
            get_noise_multiplier(
                target_epsilon=self.target_epsilon, target_delta=self.delta, sample_rate=rate,
                steps=rounds * steps_per_round, accountant="rdp",
            )
        )
        ctx.state[NOISE_KEY] = noise
        return noise

    def wrap_training(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, ctx: TrainingContext
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        from opacus import PrivacyEngine

        rate = 1.0 / len(loader)  # what Opacus' Poisson loader uses
        steps_per_round = ctx.local_epochs * len(loader)
        noise = self._noise(ctx, rate, steps_per_round)
        with warnings.catch_warnings():  # "secure RNG off": expected for a simulator, said in docs
            warnings.simplefilter("ignore", UserWarning)
            self._engine = PrivacyEngine(accountant="rdp")
        self._engine.accountant.history = [tuple(h) for h in ctx.state.get(HISTORY_KEY, [])]
        self._round = (noise, rate, steps_per_round)
        return self._engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise,
            max_grad_norm=self.max_grad_norm, poisson_sampling=True,
        )

    def finish_training(self, model: nn.Module, ctx: TrainingContext) -> dict[str, float]:
        if self._round is None:
            raise ConfigError("defense 'dp': finish_training called before wrap_training")
        noise, rate, steps = self._round
        history = extend_history(ctx.state.get(HISTORY_KEY, []), noise, rate, steps)
        ctx.state[HISTORY_KEY] = history
        epsilon = epsilon_for([(float(s), float(q), int(n)) for s, q, n in history], self.delta)
        log.debug(
            "client %d round %d: ε=%.3f after %d steps", ctx.client_id, ctx.server_round, epsilon, sum(h[2] for h in history)
        )
        return {"epsilon": epsilon, "dp_noise_multiplier": noise}

    def unwrap_model(self, model: nn.Module) -> nn.Module:
        from opacus import GradSampleModule

        return model._module if isinstance(model, GradSampleModule) else model


class DPOptions(Options):
    """``[defense_options]`` of ``dp``: Opacus DP-SGD on every client, ε accounted across rounds.
    Exactly one of ``epsilon`` (a target over the planned rounds) or ``noise_multiplier``."""

    epsilon: float | None = Field(None, gt=0.0, le=1e4, description="target ε over all rounds")
    noise_multiplier: float | None = Field(None, gt=0.0, le=1e4, description="fixed noise multiplier")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="δ of (ε, δ)-DP, below 1/n")
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6, description="per-sample clipping norm")
    rounds: int | None = Field(None, ge=1, description="planned rounds for the ε target; default: the run's rounds")

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPOptions:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("set exactly one of epsilon (target) or noise_multiplier")
        return self


@DEFENSES.register("dp")
def build_dp(options: dict[str, Any]) -> Defense:
    parsed = DPOptions.parse(options, "defense_options (dp)")
    return DPDefense(parsed.max_grad_norm, parsed.delta, parsed.noise_multiplier, parsed.epsilon, parsed.rounds)
