"""The model-inversion round observer: schedule, metric tags, the labelled figure, option errors."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from matplotlib.figure import Figure

from fedls.data import load_dataset
from fedls.errors import ConfigError
from fedls.federation.observers.base import RoundObserver
from fedls.federation.observers.model_inversion import (
    DIAGNOSTICS,
    LEAKAGE,
    ModelInversionObserver,
    build_model_inversion_observer,
    parse_model_attack,
)
from fedls.models import build_model

TINY = {
    "every": 2,
    "prior": {"steps": 3},
    "ppa": {"pool_size": 100, "candidates_per_class": 2, "samples_per_class": 2, "steps": 3, "selection_augmentations": 2,
            "classes": 2},
    "evaluation": {"epochs": 1, "surrogate_inits": 2, "surrogate_epochs": 2},
}


class RecordingLog:
    def __init__(self) -> None:
        self.scalar_values: dict[str, float] = {}
        self.figures: dict[str, Figure] = {}

    def scalars(self, metrics: Mapping[str, float]) -> None:
        self.scalar_values.update(metrics)

    def per_client(self, name: str, values: Mapping[int, float]) -> None:
        raise AssertionError("model inversion has no per-client values")

    def figure(self, tag: str, figure: Figure) -> None:
        self.figures[tag] = figure


def test_observer_schedule_tags_and_figure(tmp_path):
    splits = load_dataset("digits")
    observer = build_model_inversion_observer({**TINY, "cache_dir": str(tmp_path)}, splits, "cnn", rounds=5, run_seed=0)
    assert isinstance(observer, ModelInversionObserver) and isinstance(observer, RoundObserver)
    assert [r for r in range(6) if observer.should_attack(r)] == [2, 4, 5]  # k, 2k and the final round
    model = build_model("cnn", splits.image_shape, splits.num_classes)
    log = RecordingLog()
    observer.on_global_model(1, model, log)
    assert log.scalar_values == {} and log.figures == {}
    observer.on_global_model(2, model, log)
    for key in ("acc1", "acc1_low", "acc1_high", "baseline_acc1", "lift", "judge_accuracy"):
        assert isinstance(log.scalar_values[f"{LEAKAGE}{key}"], float)
    for key in ("acc5", "num_images", "acc1_reliable", "delta_eval", "xi_train", "xi_test", "grad_cosine_mean",
                "prior_confidence", "target_accuracy"):
        assert isinstance(log.scalar_values[f"{DIAGNOSTICS}{key}"], float), key
    assert log.scalar_values["time/attack_model_s"] > 0  # wall time goes with the other timings
    assert log.scalar_values[f"{DIAGNOSTICS}num_images"] == 4.0  # 2 classes × 2 images
    low, acc1, high = (log.scalar_values[f"{LEAKAGE}{k}"] for k in ("acc1_low", "acc1", "acc1_high"))
    assert 0 <= low <= acc1 <= high <= 1
    assert set(log.figures) == {f"{DIAGNOSTICS}prior_samples", f"{LEAKAGE}attack_vs_real"}
    figure = log.figures[f"{LEAKAGE}attack_vs_real"]
    labels = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert len(labels) == 2 and all(label.split("\n")[0] in splits.class_names for label in labels)
    assert [ax.get_title() for ax in figure.axes[:2]] == ["attack images", "real private images"]
    figure.savefig(tmp_path / "mi.png")
    assert (tmp_path / "mi.png").stat().st_size > 1000
    assert all(p.requires_grad for p in model.parameters())  # the server's model is left as it was
    # prior and judge are cached: the next attack reuses them
    assert any((tmp_path / "priors").iterdir()) and any((tmp_path / "judges").iterdir())


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"ppa": {"classes": 99}}, "more than the 5 classes"),
        ({"ppa": {"classes": [1, 7]}}, "[7] do not exist"),
        ({"samples": 3}, "model_attack: samples: unknown option"),
        ({"prior_steps": 3}, "unknown option"),  # the old flat prefixes are gone
        ({"ppa": {"samples_per_class": 30}}, "candidates_per_class"),
        ({"ppa": {"loss": "l2"}}, "ppa.loss"),
        ({"every": 0}, "every"),
        ({"prior": {"lr": "fast"}}, "prior.lr"),
        ({"evaluation": {"reliability_margin": float("nan")}}, "reliability_margin"),
        ([1, 2], "must be a table"),
    ],
)
def test_bad_options_are_one_line_errors(table, message):
    with pytest.raises(ConfigError, match=None) as caught:
        parse_model_attack(table, num_classes=5)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_nested_sections_parse():
    options = parse_model_attack(
        {"every": 3, "ppa": {"classes": [1, 3], "loss": "logit-margin", "ranking": "margin"}, "prior": {"steps": 7},
         "evaluation": {"epochs": 3, "reliability_margin": 0.1}}, num_classes=5)
    assert (options.every, options.prior.steps, options.evaluation.epochs) == (3, 7, 3)
    assert options.ppa.target_classes(5) == [1, 3] and options.ppa.loss == "logit-margin"
    assert len(parse_model_attack({"ppa": {"classes": 4, "seed": 1}}).ppa.target_classes(10)) == 4
