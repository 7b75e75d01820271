"""A run directory: everything needed to inspect or resume one run, never overwritten."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedls.config import RunConfig
from fedls.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.pt"


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
        run.write_atomic(CONFIG_FILE, config.to_toml())
        return run

    @classmethod
    def open(cls, path: Path) -> RunDirectory:
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path} is not a fedls run directory (no {CONFIG_FILE}); pass a folder under runs/")
        return cls(path)

    def write_atomic(self, name: str, text: str) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.path / name)

    def config(self) -> RunConfig:
        return RunConfig.from_toml(self.path / CONFIG_FILE)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with (self.path / METRICS_FILE).open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        file = self.path / METRICS_FILE
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_atomic(SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))

    def summary(self) -> dict[str, Any] | None:
        file = self.path / SUMMARY_FILE
        return json.loads(file.read_text()) if file.exists() else None

    def is_complete(self) -> bool:
        summary = self.summary()
        return bool(summary and summary.get("status") == "complete")

    def save_model(self, state_dict: dict[str, torch.Tensor]) -> None:
        tmp = self.path / f".{MODEL_FILE}.tmp"
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
        os.replace(tmp, self.path / MODEL_FILE)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE
