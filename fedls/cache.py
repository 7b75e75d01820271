"""On-disk cache for server-side models (the attack's generative prior, the scorer's judge).

Key = what determines the trained weights: kind, dataset name, a fingerprint of the data
split, resolution, seed and the config hash. Files are plain ``state_dict`` archives read
back with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from fedls.errors import CheckpointError, ConfigError
from fedls.outputs import read_json_object, write_atomic

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FEDLS_CACHE", Path.home() / ".cache" / "fedls"))


class Samples(Protocol):
    """A map-style dataset of (image, label) pairs that knows its length (any of fedls' datasets)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Sequence[Any]: ...


def dataset_fingerprint(dataset: Samples, with_labels: bool) -> str:
    """Hash of a split's images (and labels if asked), so a changed split never reuses a cache."""
    digest = hashlib.sha256()
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        digest.update(str(tuple(images.shape)).encode())
        digest.update(images.contiguous().cpu().numpy().tobytes())
        if with_labels:
            labels = getattr(dataset, "labels", None)
            if not isinstance(labels, torch.Tensor):
                raise TypeError(f"{type(dataset).__name__} holds an images tensor but no labels tensor")
            digest.update(labels.cpu().numpy().tobytes())
    else:  # generic datasets: hash every sample (slower, but correct)
        for i in range(len(dataset)):
            x, y = dataset[i]
            digest.update(torch.as_tensor(x).cpu().numpy().tobytes())
            if with_labels:
                digest.update(str(int(y)).encode())
    return digest.hexdigest()[:16]


def check_cache_dir(root: Path | str | None) -> Path:
    """The cache folder, refused with one line when it cannot be written: priors and judges take
    minutes to train, and finding out when saving them would throw that work away."""
    folder = Path(root) if root is not None else default_cache_dir()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cache folder {folder}: {existing} is not a folder; pass another --cache-dir or set FEDLS_CACHE")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cache folder {folder} is not writable ({existing}); pass another --cache-dir or set FEDLS_CACHE")
    return folder


def cache_path(root: Path | str | None, kind: str, key: dict[str, Any]) -> Path:
    text = json.dumps(key, sort_keys=True, default=str)
    name = f"{key.get('dataset', 'data')}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"
    return (Path(root) if root is not None else default_cache_dir()) / kind / name


def save_cached(path: Path, states: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({name: {k: v.detach().cpu() for k, v in s.items()} for name, s in states.items()}, tmp)
    os.replace(tmp, path)
    _meta_path(path).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def load_cached(path: Path) -> dict[str, dict[str, torch.Tensor]] | None:
    """The cached state dicts, or None when not cached. A corrupt file is a CheckpointError."""
    if not path.is_file():
        return None
    try:
        states = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(states, dict):
            raise TypeError("not a dict")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        name = type(exc).__name__
        raise CheckpointError(f"cached weights {path} are unreadable ({name}); delete the file to retrain") from None
    log.info("loaded cached %s", path)
    return states


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def cached_measurement(path: Path, name: str) -> float | None:
    """A number measured once on the cached weights at ``path`` (under ``name``, which names
    what it was measured on), or None. The entry goes when :func:`save_cached` writes new weights."""
    meta, _ = read_json_object(_meta_path(path))
    value = (meta or {}).get("measured", {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def remember_measurement(path: Path, name: str, value: float) -> None:
    """Keep ``value`` beside the cached weights at ``path``; a cache that cannot be written only
    costs the measurement next time."""
    meta, _ = read_json_object(_meta_path(path))
    meta = meta or {}
    meta.setdefault("measured", {})[name] = value
    try:
        write_atomic(_meta_path(path), json.dumps(meta, indent=2, sort_keys=True, default=str))
    except OSError as exc:
        log.info("could not record %s beside %s: %s", name, path, exc)
