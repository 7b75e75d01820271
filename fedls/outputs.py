"""Output files of the stand-alone commands: fresh folders, whole files, and records read back
without trusting them.

* Folders: an explicit folder that already holds files is an error; a default folder gets a
  numeric suffix instead (the run-directory convention).
* Writing: :func:`write_atomic` and :func:`atomic_path` put a file in place in one step (a
  temporary file in the same folder, then ``os.replace``), so a crash or a full disk leaves
  the old file or the new one, never half of one.
* Reading: :func:`read_json_lines` and :func:`read_json_object` read what a crash or a full
  disk may have left (a ``metrics.jsonl`` whose last line is cut off, an empty ``summary.json``)
  and say what is wrong instead of raising.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    log.info("writing outputs to %s", path)
    return path


# -- writing whole files -------------------------------------------------------------------
def _sync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (e.g. ``savefig``,
    which then needs ``format=``); when the block ends the file replaces ``path`` in one step.
    If the block raises, the temporary file is removed and ``path`` is left as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: os.replace never crosses file systems
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` in one step; see :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return path


# -- reading records back ------------------------------------------------------------------
@dataclass(frozen=True)
class JsonLines:
    """The records of a JSON-lines file and, per line that had to be skipped, what was wrong."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_json_lines(path: Path) -> JsonLines:
    """One dict per line of ``path`` (none when the file does not exist). A line that is not a
    JSON object — typically the last one, cut off by a crash or a full disk — is skipped and
    named in ``problems``; the content of the file never raises."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonLines()
    except OSError as exc:
        return JsonLines(problems=[f"{path.name} cannot be read ({exc.strerror or exc})"])
    lines = data.split(b"\n")
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError (e.g. a tail of NUL bytes)
            cut = number == len(lines)  # no newline after it: the write stopped inside this line
            problems.append(
                f"the last line of {path.name} is cut off" if cut else f"line {number} of {path.name} is not JSON"
            )
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number} of {path.name} is not a JSON object")
            continue
        records.append(value)
    return JsonLines(records, problems)


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)``; ``(None, None)`` when ``path`` does not exist; ``(None, why)`` when it
    is empty, not JSON or not a JSON object — what a crash or a full disk may leave."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    if not data.strip():
        return None, f"{path.name} is empty"
    try:
        value = json.loads(data)
    except ValueError as exc:
        return None, f"{path.name} is not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"{path.name} is not a JSON object"
    return value, None
