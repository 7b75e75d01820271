"""The round benchmark (scripts/bench_round.py) and the data it relies on fedls sharing with workers.

No timing is asserted here: speed targets are benchmark results (BENCHMARKS.md), not tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sized
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from fedls.assembly import client_partition, load_splits
from fedls.config import RunConfig
from fedls.federation import client

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_round.py"
KEYS = {"ratio_same_parallelism", "startup_overhead_s", "fedls_first_round_s", "fedls_peak_rss_mib",
        "attack_gradient_s", "attack_model_s", "clients"}


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_round", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_the_keys_and_both_sides_train_the_same_model(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--clients", "2", "--rounds", "2", "--local-epochs", "1", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [row["clients"] for row in rows] == [2]
    row = rows[0]
    assert KEYS <= row.keys()
    assert row["fedls_peak_rss_mib"] > 0 and row["plain_peak_rss_mib"] > 0
    assert row["attack_gradient_s"] is None and row["attack_model_s"] is None  # attacks off by default
    # The plain loop is the same training (seeds, shards, recipe, averaging) without Flower.
    assert row["final_model_max_abs_diff"] == 0.0


def test_tree_memory_counts_this_process() -> None:
    rss, pss = _bench_module().tree_memory_mib(os.getpid())
    assert rss > 0 and 0 < pss <= rss


def test_clients_get_the_same_data_from_the_driver_as_from_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunConfig(clients=5, partition="dirichlet", seed=3)
    splits = load_splits(config)
    assert client.share_client_data(tmp_path / "shared", config, splits)
    monkeypatch.setenv(client.SHARED_DATA_ENV, str(tmp_path / "shared"))
    client.client_shards.cache_clear()
    try:
        _, shared, shards = client.client_shards(config.to_toml())
    finally:
        client.client_shards.cache_clear()
    assert (shared.num_classes, shared.image_shape, shared.name) == (splits.num_classes, splits.image_shape, splits.name)
    assert torch.equal(shared.train.images, splits.train.images)  # type: ignore[attr-defined]
    assert np.array_equal(shared.train_targets, splits.train_targets)
    expected = client_partition(config, splits)
    assert len(shards) == len(expected) and all(np.array_equal(a, b) for a, b in zip(shards, expected, strict=True))
    for split in (shared.test, shared.public):  # clients never hold the server's data
        assert isinstance(split, Sized) and len(split) == 0


def test_shared_data_of_another_config_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunConfig(clients=4)
    client.share_client_data(tmp_path / "shared", config, load_splits(config))
    monkeypatch.setenv(client.SHARED_DATA_ENV, str(tmp_path / "shared"))
    other = RunConfig(clients=4, seed=1)
    client.client_shards.cache_clear()
    try:
        _, splits, shards = client.client_shards(other.to_toml())
    finally:
        client.client_shards.cache_clear()
    assert isinstance(splits.test, Sized) and len(splits.test) > 0  # loaded in this process, not taken from the folder
    expected = client_partition(other, splits)
    assert all(np.array_equal(a, b) for a, b in zip(shards, expected, strict=True))
