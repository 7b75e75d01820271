"""The gradient-attack observer on hand-made ServerViews (FedSGD and FedAvg probes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedls.attacks import OBSERVERS
from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.config import RunConfig
from fedls.data import ArrayDataset, DatasetSplits
from fedls.errors import ConfigError
from fedls.training.probe import probe_gradient
from strategies.observers import ClientUpdate, GroundTruth, RoundConfig, ServerView


def _splits() -> DatasetSplits:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 8, 8, generator=gen) * 2 - 1
    data = ArrayDataset(images, torch.arange(40) % 10)
    return DatasetSplits(name="toy", num_classes=10, image_shape=(1, 8, 8), train=data, test=data, public=data, public_kind="split")


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


class Images:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def __call__(self, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        self.calls.append((tag, tuple(images.shape)))


@pytest.mark.parametrize("mixup", [0.0, 1.0])
def test_fedsgd_probe_observer(mixup: float) -> None:
    splits = _splits()
    config = RunConfig(model="cnn", dataset="digits")
    observer = OBSERVERS.get("gradient_attack")({"clients": 2, "recon-steps": 5, "mixup": mixup}, config, splits, torch.device("cpu"))
    probes = observer.select_probes(1, [11, 12, 13])
    assert len(probes) == 2 and all(p["probe"] == "fedsgd" and p["probe-mixup"] == mixup for p in probes.values())
    global_weights = _weights(observer.model)
    updates, truth = [], {}
    for node in probes:
        model = observer.model.__class__(1, 10)
        model.load_state_dict(observer.model.state_dict())
        result = probe_gradient(model, splits.train, 0.2, 1, torch.Generator().manual_seed(node), torch.device("cpu"), mixup_beta=mixup or None)
        updates.append(ClientUpdate(node, 10, global_weights, {"local_steps": 1.0, "partition-id": node}, result.gradient))
        truth[node] = GroundTruth(node, result.images, result.targets, result.labels, result.extra)
    updates.append(ClientUpdate(13, 10, global_weights, {"local_steps": 1.0, "partition-id": 13}, None))  # not probed
    view = ServerView(RoundConfig(1, 0.2, 0.05, 1, 16), global_weights, updates)
    images = Images()
    metrics = observer.on_client_updates(view, truth, images)
    assert metrics["gradient/clients_attacked"] == 2
    assert metrics["gradient/success_rate"] == 1.0 and metrics["gradient/claimed_success_rate"] == 1.0
    assert metrics["gradient/label_top1"] == 1.0
    assert metrics["gradient/alpha_error"] < 1e-3
    assert metrics["gradient/feature_cosine"] > 0.999
    if mixup:
        assert metrics["gradient/mixup_error"] < 1e-3
    for key in ("recon_mse", "recon_psnr", "recon_ssim", "idlg_psnr"):
        assert np.isfinite(metrics[f"gradient/{key}"])
    assert all(k.startswith("gradient/") for k in metrics)
    assert images.calls == [("gradient/originals_soft_idlg", (6, 1, 8, 8))]


def test_fedavg_estimate_one_step_is_exact() -> None:
    """One SGD step on one sample: −Δθ/η is the gradient, so recovery is exact."""
    splits = _splits()
    observer = OBSERVERS.get("gradient_attack")({"probe": "fedavg", "recon_steps": 0}, RunConfig(model="cnn-nobias"), splits, torch.device("cpu"))
    probes = observer.select_probes(1, [5])
    assert probes[5]["probe"] == "fedavg"
    global_weights = _weights(observer.model)
    model = observer.model.__class__(1, 10, head_bias=False)
    model.load_state_dict(observer.model.state_dict())
    result = probe_gradient(model, splits.train, 0.1, 1, torch.Generator().manual_seed(0), torch.device("cpu"))
    lr = 0.05
    after = {k: v - lr * result.gradient[k] if k in result.gradient else v for k, v in global_weights.items()}
    view = ServerView(RoundConfig(1, 0.1, lr, 1, 1), global_weights, [ClientUpdate(905, 1, after, {"local_steps": 1.0, "partition-id": 5})])
    truth = {905: GroundTruth(905, result.images, result.targets, result.labels, result.extra)}
    metrics = observer.on_client_updates(view, truth, Images())
    assert metrics["gradient/success_rate"] == 1.0
    assert metrics["gradient/client_5/alpha_error"] < 1e-3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probe": "fedprox"}, "probe must be one of"),
        ({"clientz": 1}, "unknown gradient_attack option"),
        ({"clients": 0}, "clients must be >= 1"),
        ({"mixup": -1}, "mixup must be >= 0"),
        ({"recon_steps": "many"}, "must be a int"),
        ({"probe_batch": 1.5}, "whole number"),
    ],
)
def test_bad_options_raise_config_error(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GradientAttackOptions.from_dict(options)
