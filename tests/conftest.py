from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Priors and evaluation models trained by tests go to a temporary cache, never the user's."""
    previous = os.environ.get("FEDLS_CACHE")
    os.environ["FEDLS_CACHE"] = str(tmp_path_factory.mktemp("fedls-cache"))
    yield
    if previous is None:
        os.environ.pop("FEDLS_CACHE", None)
    else:
        os.environ["FEDLS_CACHE"] = previous


def processes_with_env(entry: str) -> list[int]:
    """Live processes whose environment holds ``entry`` (e.g. ``FLWR_HOME=/tmp/x``): the
    processes a test started, found without trusting the process tree (Flower's SuperLink
    starts its SuperExec and ServerApp in sessions of their own)."""
    marker = entry.encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
