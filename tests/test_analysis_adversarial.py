"""FGSM/PGD (fedls.analysis.adversarial): stay in the ε-ball and the pixel range, raise the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedls.analysis.adversarial import AttackSpec, attack_objective, run_attack
from fedls.analysis.robustness import RobustnessConfig, evaluate_robustness, random_targets
from fedls.data import ArrayDataset
from fedls.errors import ConfigError

SPECS = [
    AttackSpec("fgsm", 1, 1.0, random_start=False),
    AttackSpec("pgd", 10, 0.25),
    AttackSpec("pgd-restarts", 5, 0.25, restarts=3),
    AttackSpec("pgd-margin", 10, 0.25, loss="margin"),
]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).eval()
    x = (torch.rand(64, 1, 4, 4) * 2 - 1) * 0.99
    x[:8] = 1.0  # saturated pixels: the pixel-range clamp must act
    with torch.no_grad():
        y = model(x).argmax(1)  # clean-correct by construction
    return model, x, y


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("targeted", [False, True])
def test_stays_in_ball_and_range_and_raises_objective(setup, spec: AttackSpec, targeted: bool) -> None:
    model, x, y = setup
    eps = 0.1
    targets = random_targets(y, 3, torch.Generator().manual_seed(0)) if targeted else None
    adv = run_attack(model, x, y, eps, spec, targets)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= -1 and adv.max() <= 1
    with torch.no_grad():
        before = attack_objective(model(x), y, targets, spec.loss).mean()
        after = attack_objective(model(adv), y, targets, spec.loss).mean()
    assert after > before
    if not targeted:
        with torch.no_grad():
            assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_restarts_never_do_worse_than_one_run(setup) -> None:
    model, x, y = setup
    one = run_attack(model, x, y, 0.05, AttackSpec("a", 5, 0.25), seed=3)
    many = run_attack(model, x, y, 0.05, AttackSpec("b", 5, 0.25, restarts=4), seed=3)  # first restart = `one`
    with torch.no_grad():
        assert (model(many).argmax(1) != y).sum() >= (model(one).argmax(1) != y).sum()


def test_margin_objective_values() -> None:
    z = torch.tensor([[3.0, 1.0, 0.0]])
    y = torch.tensor([0])
    assert attack_objective(z, y, None, "margin").item() == pytest.approx(-2.0)
    assert attack_objective(z, y, torch.tensor([2]), "margin").item() == pytest.approx(-3.0)


def test_random_targets_differ_from_labels() -> None:
    y = torch.randint(0, 5, (500,))
    t = random_targets(y, 5, torch.Generator().manual_seed(0))
    assert (t != y).all() and set(t.tolist()) == set(range(5))


def test_evaluate_robustness_table(setup) -> None:
    model, x, y = setup
    config = RobustnessConfig(epsilon=0.3, samples=64, attacks=tuple(SPECS[:2]))
    clean, rows = evaluate_robustness(model, model, ArrayDataset(x, y), 3, config)
    assert clean == 1.0
    assert [(r.attack, r.mode) for r in rows][-2:] == [("transfer-pgd20", "untargeted"), ("transfer-pgd20", "targeted")]
    assert len(rows) == 6
    for r in rows:
        assert 0 <= r.accuracy <= 1 and 0 <= r.success <= 1


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigError):
        AttackSpec("x", 0, 0.1)
    with pytest.raises(ConfigError):
        RobustnessConfig(epsilon=0)
