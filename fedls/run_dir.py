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
from fedls.outputs import read_json_lines, read_json_object, write_atomic

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

    @staticmethod
    def target(config: RunConfig) -> Path:
        """Where :meth:`create` would put the run, checked but not created: an explicit ``name``
        that exists is an error (nothing is overwritten); the default name gets a numeric suffix."""
        root = Path(config.run_dir)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--run-dir {root} is a file; pass a folder")
        if config.name is not None:
            path = root / config.name
            if path.exists():
                raise ConfigError(f"run directory {path} already exists; choose another --name or remove it")
            return path
        base = config.default_name()
        path, n = root / base, 1
        while path.exists():
            path, n = root / f"{base}-{n}", n + 1
        return path

    @classmethod
    def create(cls, config: RunConfig) -> RunDirectory:
        """Make a fresh directory under ``config.run_dir`` (see :meth:`target`)."""
        path = cls.target(config)
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
        """Put ``name`` in place in one step (:func:`fedls.outputs.write_atomic`); on failure the
        old file (if any) stays, the temporary one is gone, and :class:`OutputError` says which file."""
        target = self.path / name
        try:
            write_atomic(target, data)
        except OSError as exc:
            raise output_error(target, exc) from None

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
        """Every row; a row a hard kill or a full disk cut off is skipped with a warning (it was
        never a finished round)."""
        lines = read_json_lines(self.path / METRICS_FILE)
        for problem in lines.problems:
            log.warning("%s: %s; skipped", self.path, problem)
        return lines.records

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_atomic(SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))

    def summary(self) -> dict[str, Any] | None:
        """The summary, or None when there is none or it is unreadable (logged: a crash or a full
        disk can leave it empty)."""
        summary, problem = read_json_object(self.path / SUMMARY_FILE)
        if problem is not None:
            log.warning("%s: %s", self.path, problem)
        return summary

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
