"""Attack-stage ablation (Struppek et al. 2024, §4.4) on tiny models and a tiny generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fedls.analysis.runs import TrainedRun
from fedls.analysis.stages import analyse_stages, score_images
from fedls.attacks.model.config import PPAOptions
from fedls.attacks.model.prior import Prior
from fedls.config import RunConfig
from fedls.data import ArrayDataset, DatasetSplits
from fedls.errors import ConfigError
from fedls.federation.observers.model_inversion import ModelAttackOptions


class _Gen(nn.Module):
    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 4, 4)


def _run(alpha: float, seed: int) -> TrainedRun:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    ds = ArrayDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
    splits = DatasetSplits("toy", 3, (1, 4, 4), ds, ds, ds, "samples")
    return TrainedRun(Path(f"run{seed}"), RunConfig(alpha=alpha), splits, model)  # type: ignore[arg-type]


def test_three_tables_and_cosine_curves() -> None:
    torch.manual_seed(0)
    runs = [_run(0.0, 1), _run(0.1, 2)]
    options = ModelAttackOptions(
        ppa=PPAOptions(pool_size=40, candidates_per_class=4, samples_per_class=2, steps=5, batch_size=16)
    )
    eval_model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    result = analyse_stages(runs, Prior(_Gen()), eval_model, options)
    assert len(result.sampling) == 2 and len(result.optimisation) == 2 and len(result.selection) == 4
    for curve in result.cosine_curves.values():
        assert len(curve["mean"]) == 4  # steps - 1
        assert all(-1 - 1e-6 <= m <= 1 + 1e-6 for m in curve["mean"])
    # targets' parameters are restored to trainable afterwards
    assert all(p.requires_grad for r in runs for p in r.model.parameters())


def test_linear_target_gives_constant_gradient_direction() -> None:
    # With CE on a linear model of a linear generator, the image gradient direction changes
    # only through the softmax; with a near-one-hot target class it stays close to constant.
    runs = [_run(0.0, 1), _run(0.0, 3)]
    options = ModelAttackOptions(ppa=PPAOptions(pool_size=20, candidates_per_class=2, samples_per_class=1, steps=4, loss="ce",
                                                  opt_crop_scale=(1.0, 1.0), opt_flip=0.0, batch_size=16))
    result = analyse_stages(runs, Prior(_Flat()), nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), options)
    for curve in result.cosine_curves.values():
        assert min(curve["mean"]) > 0.9


class _Flat(nn.Module):
    latent_dim = 16

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 1, 4, 4)


def test_score_images() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[10.0], [-10.0]]))
        model[1].bias.zero_()
    s = score_images(model, torch.tensor([[[[1.0]]], [[[-1.0]]]]), torch.tensor([0, 0]))
    assert s["eval_acc1"] == 0.5
    assert s["eval_confidence"] == pytest.approx(0.5, abs=1e-6)


def test_needs_two_runs() -> None:
    with pytest.raises(ConfigError):
        analyse_stages([_run(0.0, 1)], Prior(_Gen()), nn.Identity(), ModelAttackOptions())
