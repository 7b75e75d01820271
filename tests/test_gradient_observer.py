"""The gradient-leakage observer (attack + scorer) on hand-made ServerViews: the malicious
FedSGD/FedAvg probes, the count scorer and the option schema. The honest channel end to end is
covered in tests/test_simulation.py, its estimator in tests/test_batch_labels.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch

from fedls.attacks.gradient.options import GradientAttackOptions
from fedls.config import RunConfig
from fedls.data import ArrayDataset, DatasetSplits
from fedls.errors import ConfigError
from fedls.federation.observers import OBSERVERS
from fedls.threat_model import ClientRecipe, ClientUpdate, GroundTruth, ServerView
from fedls.training.probe import probe_gradient


class FakeLog:
    """A RoundLog that keeps what observers write."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.clients: dict[str, Mapping[int, float]] = {}
        self.figures: list[tuple[str, Any]] = []

    def scalars(self, metrics: Mapping[str, float]) -> None:
        self.values.update(metrics)

    def per_client(self, name: str, values: Mapping[int, float]) -> None:
        self.clients[name] = values

    def figure(self, tag: str, figure: Any) -> None:
        self.figures.append((tag, figure))


def _splits() -> DatasetSplits:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 8, 8, generator=gen) * 2 - 1
    data = ArrayDataset(images, torch.arange(40) % 10)
    return DatasetSplits(
        name="toy", num_classes=10, image_shape=(1, 8, 8), train=data, test=data, public=data, public_kind="classes"
    )


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _observer(options: dict[str, Any], model: str = "cnn"):  # noqa: ANN202 - the registered observer
    config = RunConfig(model=model, dataset="digits", gradient_attack=options)
    return OBSERVERS.get("gradient_attack").build(config, _splits(), torch.device("cpu"))


@pytest.mark.parametrize("mixup", [0.0, 1.0])
def test_fedsgd_probe_observer(mixup: float) -> None:
    splits = _splits()
    observer = _observer({"threat": "malicious-fedsgd", "clients": 2, "recon-steps": 5, "mixup": mixup})
    probes = observer.probe_requests(1, [0, 1, 2])
    assert len(probes) == 2 and all(p.mode == "fedsgd" and p.mixup == mixup for p in probes.values())
    attack_model = observer.attack.model
    global_weights = _weights(attack_model)
    recipe = ClientRecipe(alpha=0.2)
    updates, truth = [], {}
    for client in sorted(probes):
        model = attack_model.__class__(1, 10)
        model.load_state_dict(attack_model.state_dict())
        result = probe_gradient(
            model, splits.train, 0.2, 1, torch.Generator().manual_seed(client), torch.device("cpu"), mixup_beta=mixup or None
        )
        updates.append(ClientUpdate(100 + client, client, 10, 1, recipe, global_weights, {}, result.gradient))
        truth[client] = GroundTruth(client, np.bincount(result.labels.numpy(), minlength=10), 0.2, result.images, result.targets,
                                    result.labels, result.extra)
    view = ServerView(1, recipe, global_weights, updates)
    log = FakeLog()
    observer.on_client_updates(view, truth, log)
    values = log.values
    assert values["leakage/gradient/probe_label_success"] == 1.0
    assert values["diagnostics/gradient/probe_label_top1"] == 1.0
    assert values["diagnostics/gradient/probe_alpha_error"] < 1e-3
    assert values["diagnostics/gradient/probe_feature_cosine"] > 0.999
    if mixup:
        assert values["diagnostics/gradient/probe_mixup_error"] < 1e-3
    for key in ("recon_psnr", "recon_psnr_hard_label", "recon_psnr_mean_image"):
        assert np.isfinite(values[f"leakage/gradient/{key}"])
    assert [tag for tag, _ in log.figures] == ["leakage/gradient/reconstructions"]
    labels = [ax.get_ylabel() for ax in log.figures[0][1].axes if ax.get_ylabel()]
    assert labels == ["original", "soft-label reconstruction", "hard-label baseline (iDLG)"]


def test_fedavg_probe_estimate_one_step_is_exact() -> None:
    """One SGD step on one sample: −Δθ/η is the gradient, so recovery is exact."""
    splits = _splits()
    observer = _observer({"threat": "malicious-fedavg"}, model="cnn-nobias")
    probes = observer.probe_requests(1, [5])
    assert probes[5].mode == "fedavg"
    attack_model = observer.attack.model
    global_weights = _weights(attack_model)
    model = attack_model.__class__(1, 10, head_bias=False)
    model.load_state_dict(attack_model.state_dict())
    result = probe_gradient(model, splits.train, 0.1, 1, torch.Generator().manual_seed(0), torch.device("cpu"))
    recipe = ClientRecipe(lr=0.05, momentum=0.0, alpha=0.1, max_grad_norm=0.0)
    after = {k: v - recipe.lr * result.gradient[k] if k in result.gradient else v for k, v in global_weights.items()}
    update = ClientUpdate(905, 5, 1, 1, recipe, after, {})
    truth = {
        5: GroundTruth(
            5, np.bincount(result.labels.numpy(), minlength=10), 0.1, result.images, result.targets, result.labels, result.extra
        )
    }
    log = FakeLog()
    observer.on_client_updates(ServerView(1, recipe, global_weights, [update]), truth, log)
    assert log.values["leakage/gradient/probe_label_success"] == 1.0


def test_honest_server_asks_no_probe() -> None:
    observer = _observer({})
    assert observer.probe_requests(1, [0, 1, 2]) == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threat": "fedprox"}, "threat: Input should be 'honest', 'malicious-fedsgd' or 'malicious-fedavg'"),
        ({"clientz": 1}, "clientz: unknown option"),
        ({"clients": 0}, "clients: Input should be greater than or equal to 1"),
        ({"mixup": -1}, "mixup: Input should be greater than or equal to 0"),
        ({"recon_steps": "many"}, "recon_steps: Input should be a valid integer"),
        ({"probe_batch": 1.5}, "probe_batch: Input should be a valid integer, got a number with a fractional part"),
        ({"tv_weight": float("nan")}, "tv_weight: .*got nan"),
    ],
)
def test_bad_options_raise_config_error(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GradientAttackOptions.parse(options, "gradient_attack")


def test_count_scorer_against_the_truth() -> None:
    from fedls.metrics.gradient_leakage import chance_count_mae, score_counts

    truth = GroundTruth(0, np.array([6, 2, 0, 0]), -0.05)
    exact = score_counts(np.array([6, 2, 0, 0]), -0.05, truth)
    assert exact == {"count_exact": 1.0, "count_mae": 0.0, "label_set_exact": 1.0, "alpha_error": 0.0}
    off = score_counts(np.array([5, 2, 1, 0]), 0.05, truth)
    assert off["count_exact"] == 0.0 and off["count_mae"] == pytest.approx(0.5) and off["label_set_exact"] == 0.0
    assert off["alpha_error"] == pytest.approx(0.1)
    assert score_counts(np.array([8, 0]), -0.05, truth)["count_exact"] == 0.0  # wrong number of classes
    assert chance_count_mae(truth) == pytest.approx(2.0)  # |6-2| + |2-2| + 2 + 2 over 4 classes
