"""Output folders of the stand-alone commands: fresh, never overwriting earlier results.

An explicit folder that already holds files is an error; a default folder gets a numeric
suffix instead (the run-directory convention).
"""

from __future__ import annotations

import logging
from pathlib import Path

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
    log.info("writing outputs to %s", path)
    return path
