"""Struppek et al. (2024) §4.3 / Fig. 5 distance statistics on embeddings whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedls.analysis.embeddings import (
    EmbeddingConfig,
    analyse_embeddings,
    distance_distributions,
    distance_summary,
    select_samples,
)
from fedls.data import ArrayDataset
from fedls.errors import ConfigError


def test_hand_made_embedding() -> None:
    # Class 0 at x=0 and x=1, class 1 at x=10 and x=12 (1-D). Max distance 12.
    feats = torch.tensor([[0.0], [1.0], [10.0], [12.0]])
    labels = torch.tensor([0, 0, 1, 1])
    d = distance_distributions(feats, labels)
    np.testing.assert_allclose(d["intra"], np.array([1, 1, 2, 2]) / 12)
    np.testing.assert_allclose(d["inter"], np.array([11, 10, 9.5, 11.5]) / 12)
    np.testing.assert_allclose(d["nn_intra"], np.array([1, 1, 2, 2]) / 12)
    np.testing.assert_allclose(d["nn_inter"], np.array([10, 9, 9, 11]) / 12)
    s = distance_summary(d)
    assert s["intra"]["mean"] == pytest.approx(1.5 / 12)
    assert s["inter_over_intra"] == pytest.approx(10.5 / 1.5)
    assert s["nn_other_class_fraction"] == 0.0


def test_scaling_invariance_and_mixed_clusters() -> None:
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.2, 0.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    a = distance_distributions(feats, labels)
    b = distance_distributions(feats * 1000, labels)
    for k in a:
        np.testing.assert_allclose(a[k], b[k])
    # every nearest neighbour is of the other class: 0→0.2, 1→0.2, 0.2→0, 5→1
    assert distance_summary(a)["nn_other_class_fraction"] == pytest.approx(1.0)
    mixed = distance_distributions(feats, torch.tensor([0, 1, 0, 1]))  # 0 and 0.2 now share a class
    assert distance_summary(mixed)["nn_other_class_fraction"] == pytest.approx(0.25)  # only x=1 (→0.2)


def test_singleton_class_has_no_intra_distance() -> None:
    d = distance_distributions(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1]))
    assert np.isnan(d["intra"][2]) and np.isnan(d["nn_intra"][2])
    assert np.isfinite(distance_summary(d)["intra"]["mean"])


def test_one_class_is_rejected() -> None:
    with pytest.raises(ConfigError):
        distance_distributions(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))


def test_select_samples_caps_classes_and_samples() -> None:
    labels = np.array([2, 0, 1, 0, 2, 0, 1, 2])
    idx = select_samples(labels, max_per_class=2, max_classes=2)
    assert idx.tolist() == [1, 2, 3, 6]


class _Identity(torch.nn.Module):
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_analyse_embeddings_end_to_end() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 1, 2, 2, generator=g) * 0.1, torch.randn(20, 1, 2, 2, generator=g) * 0.1 + 3])
    y = torch.tensor([0] * 20 + [1] * 20)
    ds = ArrayDataset(x, y)
    a = analyse_embeddings(_Identity(), ds, y.numpy(), EmbeddingConfig(max_per_class=10, perplexity=5), "m")
    assert a.features.shape == (20, 4)
    assert a.tsne is not None and a.tsne.shape == (20, 2)
    assert a.summary["inter_over_intra"] > 5  # two far-apart tight blobs
    assert a.summary["nn_other_class_fraction"] == 0.0
