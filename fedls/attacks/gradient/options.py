"""Options of the attack on client updates (the ``gradient_attack`` section of a run config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedls.schema import Options
from fedls.threat_model import ProbeMode, ProbeRequest

ThreatMode = Literal["honest", "malicious-fedsgd", "malicious-fedavg"]
RECONSTRUCTION_OFF_REASON = (
    "image reconstruction is off by default: an honest FedAvg update averages many samples over many "
    "steps, so no single image can be matched; it needs a malicious probe (--threat malicious-fedsgd)"
)


class GradientAttackOptions(Options):
    """The curious server's attack on client updates.

    ``threat = "honest"`` (default): the server only reads the clients' real FedAvg updates and
    recovers each client's per-class label counts and α (batch label recovery) — nothing the
    clients do changes. The ``malicious-*`` modes change what some clients do and are named so:
    ``malicious-fedsgd`` asks ``clients`` clients per round to also send the gradient of
    ``probe_batch`` samples (Wang et al. 2024's FedSGD setting, exact for one sample);
    ``malicious-fedavg`` asks them to train one round on exactly those samples.
    """

    threat: ThreatMode = Field(
        "honest",
        description="honest (read real FedAvg updates), malicious-fedsgd or malicious-fedavg (probes change what clients do)",
    )
    every: int = Field(1, ge=1, description="attack every n-th round")
    clients: int = Field(1, ge=1, description="malicious modes: clients probed per round")
    probe_batch: int = Field(1, ge=1, le=4096, description="malicious modes: samples in a probe (1 = exact analytic recovery)")
    mixup: float = Field(0.0, ge=0.0, le=100.0, description="malicious modes: probe mixup Beta(a, a) parameter; 0 = off")
    recon_steps: int = Field(
        0, ge=0, le=100_000, description=f"image-reconstruction Adam steps, 0 = off; {RECONSTRUCTION_OFF_REASON}"
    )
    recon_lr: float = Field(0.1, gt=0.0, le=10.0, description="reconstruction step size")
    tv_weight: float = Field(1e-2, ge=0.0, le=100.0, description="reconstruction total-variation weight")
    feature_weight: float = Field(0.1, ge=0.0, le=100.0, description="reconstruction weight of the recovered-feature term")
    grid: int = Field(4, ge=0, le=64, description="attacked clients shown in the reconstruction figure")
    seed: int = Field(0, ge=0, description="seed of the attack's own random draws")
    nonnegative_features: bool = Field(True, description="assume the head input is post-ReLU (breaks λ ties of a bias-free head)")

    @property
    def malicious(self) -> bool:
        return self.threat != "honest"

    @property
    def augmentation(self) -> Literal["smoothing", "mixup"]:
        return "mixup" if self.mixup > 0 else "smoothing"

    def probe_request(self) -> ProbeRequest:
        mode: ProbeMode = "fedsgd" if self.threat == "malicious-fedsgd" else "fedavg"
        return ProbeRequest(mode=mode, batch=self.probe_batch, mixup=self.mixup)
