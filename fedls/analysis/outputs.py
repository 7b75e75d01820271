"""Where the analysis commands write: a fresh folder, JSON/CSV numbers, PNGs, TensorBoard.

Outputs are never overwritten: an explicit folder that already holds files is an error,
a default folder gets a numeric suffix instead (the run-directory convention).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedls.errors import ConfigError

log = logging.getLogger(__name__)


def prepare_output_dir(out: Path | None, default: Path) -> Path:
    """Create and return the output folder.

    ``out`` given and non-empty → :class:`ConfigError`; ``out`` omitted → ``default`` or
    ``default-1``, ``default-2``, ... whichever does not exist yet.
    """
    if out is not None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"output folder {out} already exists and is not empty; pass another --out or remove it")
        path = out
    else:
        path, n = default, 1
        while path.exists():
            path, n = default.parent / f"{default.name}-{n}", n + 1
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {exc.strerror}; pass a writable --out") from None
    log.info("writing analysis outputs to %s", path)
    return path


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can load the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_clean(data), indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        path.write_text("")
        return
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def summary_stats(values: Iterable[float]) -> dict[str, float]:
    """Mean, standard deviation (population), min and max of a list of numbers."""
    xs = [float(v) for v in values]
    if not xs:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return {"mean": mean, "std": std, "min": min(xs), "max": max(xs), "n": len(xs)}
