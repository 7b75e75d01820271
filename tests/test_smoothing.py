from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fedls.errors import ConfigError
from fedls.smoothing import SmoothingSchedule, label_smoothing_loss, smoothed_targets


@pytest.mark.parametrize("alpha", [0.1, 0.0, -0.05, -0.3])
def test_loss_equals_eq3_of_seed_001(alpha: float) -> None:
    """Eq. 3: (1-α)·CE(y, p) + α/C · CE(1, p), with CE(1, p) = -Σ_k log p_k."""
    torch.manual_seed(1)
    logits = torch.randn(7, 5, dtype=torch.float64)
    labels = torch.randint(0, 5, (7,))
    log_p = F.log_softmax(logits, dim=-1)
    ce_true = -log_p.gather(1, labels[:, None]).squeeze(1)
    ce_uniform = -log_p.sum(dim=-1)
    expected = ((1 - alpha) * ce_true + alpha / 5 * ce_uniform).mean()
    assert torch.allclose(label_smoothing_loss(logits, labels, alpha), expected, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.1, 0.0, -0.05, -0.3])
def test_logit_gradient_is_p_minus_smoothed_target(alpha: float) -> None:
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 5, 1])
    label_smoothing_loss(logits, labels, alpha).backward()
    expected = (F.softmax(logits.detach(), -1) - smoothed_targets(labels, 6, alpha).double()) / 4
    assert torch.allclose(logits.grad, expected, atol=1e-12)


def test_targets_example_from_the_paper() -> None:
    # Struppek et al. (2024) §2.2: α = 0.3 and α = -0.3 on y = (1, 0, 0)
    assert torch.allclose(smoothed_targets(torch.tensor([0]), 3, 0.3), torch.tensor([[0.8, 0.1, 0.1]]))
    assert torch.allclose(smoothed_targets(torch.tensor([0]), 3, -0.3), torch.tensor([[1.2, -0.1, -0.1]]))
    assert math.isclose(float(smoothed_targets(torch.tensor([2]), 3, -0.3).sum()), 1.0, abs_tol=1e-6)


def test_negative_schedule_warms_up_then_ramps() -> None:
    schedule = SmoothingSchedule(alpha=-0.06, warmup_rounds=2, ramp_rounds=3)
    values = [schedule.alpha_at(r) for r in range(1, 8)]
    assert values[:2] == [0.0, 0.0]
    assert values[2:5] == pytest.approx([-0.02, -0.04, -0.06])
    assert values[5:] == [-0.06, -0.06]


def test_positive_alpha_holds_from_the_start_unless_asked() -> None:
    assert SmoothingSchedule(0.1, 5, 5).alpha_at(1) == 0.1
    assert SmoothingSchedule(0.1, 1, 0, warmup_negative_only=False).alpha_at(1) == 0.0


def test_out_of_range_alpha_is_rejected() -> None:
    with pytest.raises(ConfigError, match="<= 1"):
        SmoothingSchedule(1.5)


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [(2, "never smooths: all 2 rounds are inside the 3-round warm-up"), (5, "reaches only α=-0.0333 by round 5"), (6, None)],
)
def test_a_run_too_short_for_the_negative_alpha_warm_up_is_warned(
    rounds: int, expected: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The warm-up trap: a comparison would label such a run α = −0.05 though its clients never used it."""
    from fedls.config import RunConfig

    config = RunConfig(alpha=-0.05, rounds=rounds, warmup_rounds=3, ramp_rounds=3)
    with caplog.at_level("WARNING", logger="fedls.config"):
        config.check_registries()
    if expected is None:
        assert config.schedule_warning() is None and not caplog.records
    else:
        assert expected in (config.schedule_warning() or "") and expected in caplog.text
    assert RunConfig(alpha=0.1, rounds=1).schedule_warning() is None  # positive α needs no warm-up
