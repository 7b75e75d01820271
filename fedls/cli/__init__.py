"""The `fedls` command line. Each module below adds its commands to :data:`fedls.cli.app.app`;
the import order is the order of `fedls --help`."""

# isort: skip_file

from __future__ import annotations

from fedls.cli import simulate  # noqa: F401  (registers commands)
from fedls.cli import attack_model  # noqa: F401  (registers `fedls attack model`)
from fedls.cli import prior  # noqa: F401  (registers `fedls prior train`)
from fedls.cli import attack_gradient  # noqa: F401  (registers `fedls attack gradient`)
from fedls.cli import compare  # noqa: F401  (registers `fedls compare`)
from fedls.cli import analysis  # noqa: F401  (registers `fedls toy`, `embeddings`, `robustness`, `stages`)
from fedls.cli import reports  # noqa: F401  (registers `fedls runs`, `fedls report`)
from fedls.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
