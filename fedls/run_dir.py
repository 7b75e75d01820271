"""A run directory: everything needed to inspect or resume one run, never overwritten.

Writes survive a full disk or a kill without leaving half a file: ``config.toml``,
``summary.json`` and ``model.pt`` are written whole to a temporary file beside the target and
moved into place with ``os.replace`` (the temporary file is removed when the write fails); a
``metrics.jsonl`` row that cannot be written whole is cut off again, so the rows of finished
rounds stay readable. A failed write raises :class:`OutputError`, one line that names the file
(and, for a full disk, what to do).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedls.config import RunConfig
from fedls.errors import CheckpointError, ConfigError, FedlsError

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.pt"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

log = logging.getLogger(__name__)


class OutputError(FedlsError):
    """A run's output could not be written (full disk, read-only or vanished folder)."""


def output_error(path: Path | str, exc: OSError) -> OutputError:
    """The one line a user sees for a failed write of ``path``."""
    if exc.errno in DISK_FULL:
        return OutputError(f"no space left on device writing {path}; free space and rerun")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}; check the run directory's folder")


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    @classmethod
    def create(cls, config: RunConfig) -> RunDirectory:
        """Make a fresh directory under ``config.run_dir``.

        An explicit ``name`` that exists is an error (nothing is overwritten); the default
        name gets a numeric suffix instead.
        """
        root = Path(config.run_dir)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--run-dir {root} is a file; pass a folder")
        if config.name is not None:
            path = root / config.name
            if path.exists():
                raise ConfigError(f"run directory {path} already exists; choose another --name or remove it")
        else:
            base = config.default_name()
            path, n = root / base, 1
            while path.exists():
                path, n = root / f"{base}-{n}", n + 1
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {path}: {exc.strerror}; pass a writable --run-dir") from None
        run = cls(path)
        try:
            run.write_atomic(CONFIG_FILE, config.to_toml())
        except OutputError:
            path.rmdir()  # an empty folder would block rerunning under the same --name
            raise
        return run

    @classmethod
    def open(cls, path: Path) -> RunDirectory:
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path} is not a fedls run directory (no {CONFIG_FILE}); pass a folder under runs/")
        return cls(path)

    def write_atomic(self, name: str, data: str | bytes) -> None:
        """Put ``name`` in place in one step; on failure the old file (if any) stays, the
        temporary one is gone, and :class:`OutputError` says which file."""
        target = self.path / name
        tmp = self.path / f".{name}.{os.getpid()}.tmp"  # same folder: os.replace never crosses file systems
        try:
            with tmp.open("wb") as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the rename, so a crash cannot leave an empty file in place
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise output_error(target, exc) from None
        except BaseException:  # e.g. KeyboardInterrupt mid-write: no half file left behind either
            tmp.unlink(missing_ok=True)
            raise

    def config(self) -> RunConfig:
        return RunConfig.from_toml(self.path / CONFIG_FILE)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one row, whole or not at all: unbuffered writes of the encoded row, and on a
        failure (a full disk stops writes part-way) the file is cut back to where the row began,
        so the rows of earlier rounds stay parseable."""
        file = self.path / METRICS_FILE
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(file, exc) from None
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError as exc:
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    log.warning("could not cut the partial row off %s", file, exc_info=True)
                raise output_error(file, exc) from None
        finally:
            os.close(fd)

    def metrics(self) -> list[dict[str, Any]]:
        """Every row; a row a hard kill cut off is skipped with a warning (it was never a
        finished round)."""
        file = self.path / METRICS_FILE
        if not file.exists():
            return []
        rows = []
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                log.warning("%s: line %d is not JSON (a write cut off by a kill?); skipped", file, number)
        return rows

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_atomic(SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))

    def summary(self) -> dict[str, Any] | None:
        file = self.path / SUMMARY_FILE
        return json.loads(file.read_text()) if file.exists() else None

    def is_complete(self) -> bool:
        summary = self.summary()
        return bool(summary and summary.get("status") == "complete")

    def save_model(self, state_dict: dict[str, torch.Tensor]) -> None:
        # Serialised in memory first: torch.save writing to a file reports a full disk as a
        # RuntimeError of its zip writer, not as the OSError it is.
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
        self.write_atomic(MODEL_FILE, buffer.getvalue())

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE
