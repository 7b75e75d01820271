"""The model-inversion instrument makes no false positives (issue 14, item 3).

With a class-disjoint prior (digits 5–9) and a private task of digits 0–4, Acc@1 must measure
what the *target* knows about the private classes, not what the prior can draw. Controls:

* an untrained target knows nothing → Acc@1 near chance (1/5);
* a target trained on the private images with shuffled labels saw every private image but
  learned no image–class association → near chance;
* a target trained only on the server's public data (digits 5–9, relabelled 0–4) never saw a
  private image, and with disjoint classes cannot even know what the private classes look
  like → far below a target really trained on the private task.

Budgets are tiny (CPU, < 60 s per test); the prior and the judge are shared per module.
"""

from __future__ import annotations

import pytest
import torch

from fedls.attacks.model.config import PPAOptions, PriorOptions
from fedls.attacks.model.ppa import run_ppa
from fedls.attacks.model.prior import load_or_train_prior
from fedls.data import dataset_tensors, load_dataset
from fedls.metrics.inversion import score_inversion
from fedls.metrics.judge import JudgeOptions, accuracy, load_or_train_judge, train_classifier
from fedls.models import build_model

ATTACK = PPAOptions(pool_size=1000, candidates_per_class=16, samples_per_class=10, steps=30, selection_augmentations=8)
CHANCE = 0.2


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    splits = load_dataset("digits")
    assert splits.public_kind == "classes" and splits.num_classes == 5
    cache = tmp_path_factory.mktemp("controls-cache")
    prior = load_or_train_prior("digits", splits.public, splits.image_shape, PriorOptions(steps=800), cache_dir=cache)
    judge = load_or_train_judge("digits", splits.train, splits.test, splits.image_shape, 5, "cnn", JudgeOptions(epochs=15),
                                cache_dir=cache)
    return splits, prior, judge


def _train(images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    return train_classifier(build_model("cnn", (1, 8, 8), 5), images, labels, 12, 32, 1e-3, seed=0)


def _attack(setting, target: torch.nn.Module) -> dict[str, float]:
    splits, prior, judge = setting
    train, test = dataset_tensors(splits.train), dataset_tensors(splits.test)
    result = run_ppa(target, prior, 5, ATTACK)
    return score_inversion(result.images, result.targets, result.baseline_images, result.baseline_targets, judge,
                           accuracy(target, *test), train, test, JudgeOptions(), extraction=False)


@pytest.fixture(scope="module")
def trained(setting):
    splits = setting[0]
    return _attack(setting, _train(*dataset_tensors(splits.train)))


def test_trained_target_leaks(trained):
    assert trained["num_images"] == 50 and trained["acc1_reliable"] == 1.0
    assert trained["acc1_low"] > CHANCE  # clearly above chance, with its interval


def test_untrained_target_scores_near_chance(setting, trained):
    torch.manual_seed(0)
    control = _attack(setting, build_model("cnn", (1, 8, 8), 5))
    assert control["acc1_low"] <= CHANCE <= control["acc1_high"] or control["acc1"] <= CHANCE
    assert trained["acc1"] - control["acc1"] >= 0.3


def test_shuffled_label_target_scores_near_chance(setting, trained):
    x, y = dataset_tensors(setting[0].train)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    control = _attack(setting, _train(x, shuffled))
    assert control["acc1_low"] <= CHANCE <= control["acc1_high"] or control["acc1"] <= CHANCE
    assert trained["acc1"] - control["acc1"] >= 0.3


def test_target_that_never_saw_private_data_scores_far_below(setting, trained):
    x, y = dataset_tensors(setting[0].public)  # digits 5-9: the server's own data
    control = _attack(setting, _train(x, y - 5))
    assert control["acc1"] <= 0.4
    assert trained["acc1"] - control["acc1"] >= 0.3
