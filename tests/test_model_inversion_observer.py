"""The model-inversion round observer: schedule, metric keys, image logging, registry."""

from __future__ import annotations

import pytest
import torch

from fedls.attacks import OBSERVERS, build_observers
from fedls.attacks.model.observer import ModelInversionObserver
from fedls.config import RunConfig
from fedls.data import load_dataset
from fedls.errors import ConfigError
from fedls.models import build_model

TINY = {
    "every": 2, "pool_size": 100, "candidates_per_class": 2, "samples_per_class": 1, "steps": 3,
    "selection_augmentations": 2, "classes": 2, "prior_steps": 3, "eval_epochs": 1,
    "eval_surrogate_inits": 2, "eval_surrogate_epochs": 2,
}



def test_observer_schedule_keys_and_images(tmp_path):
    splits = load_dataset("digits")
    config = RunConfig(rounds=5, model_attack={**TINY, "cache_dir": str(tmp_path)})
    (observer,) = build_observers(config, splits, torch.device("cpu"))
    assert isinstance(observer, ModelInversionObserver)
    assert [r for r in range(6) if observer.should_attack(r)] == [2, 4, 5]  # k, 2k and the final round
    images: dict[str, tuple[torch.Tensor, int]] = {}
    model = build_model("cnn", splits.image_shape, splits.num_classes)
    assert observer.on_global_model(1, model, lambda tag, x, nrow=8: images.__setitem__(tag, (x, nrow))) == {}
    metrics = observer.on_global_model(2, model, lambda tag, x, nrow=8: images.__setitem__(tag, (x, nrow)))
    for key in ("mia/acc1", "mia/acc5", "mia/delta_eval", "mia/xi_train", "mia/xi_test", "mia/xi_train_std",
                "mia/grad_cosine_mean", "mia/prior_confidence", "mia/attack_seconds"):
        assert key in metrics and isinstance(metrics[key], float)
    assert set(images) == {"mia/prior_samples", "mia/attack_vs_real"}
    grid, nrow = images["mia/attack_vs_real"]
    assert nrow == 10 and grid.shape == (2 * 10, *splits.image_shape)  # 2 classes × (5 attack slots + 5 real)
    assert all(p.requires_grad for p in model.parameters())  # the server's model is left as it was
    # the prior and evaluation model are cached: the next attack reuses them
    assert any((tmp_path / "priors").iterdir()) and any((tmp_path / "eval_models").iterdir())


def test_observer_rejects_bad_options():
    splits = load_dataset("digits")
    with pytest.raises(ConfigError, match="unknown model_attack option"):
        OBSERVERS.get("model_attack")({"every": 1, "samples": 3}, RunConfig(), splits, torch.device("cpu"))
