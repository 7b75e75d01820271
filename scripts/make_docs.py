"""Regenerate the tables and figures of README.md and docs/*.md from comparison results.

Blocks between ``<!-- generated:<comparison>/<kind> -->`` and ``<!-- /generated:<comparison>/<kind> -->``
are rebuilt from ``<results>/<comparison>/`` (a folder written by ``fedls compare``); kinds are
``table``, ``tests`` and ``plot`` (see :mod:`fedls.compare.docs`). Hand-written text outside
the markers is kept. Each block is stamped with the fedls version, commit, seeds and commands.

    .venv/bin/python scripts/make_docs.py --results runs
    .venv/bin/python scripts/make_docs.py --results runs --check     # exit 1 if a document is stale
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    from fedls.compare.docs import update_documents
    from fedls.errors import FedlsError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="folder holding one folder per comparison")
    parser.add_argument("--docs", type=Path, nargs="+", help="Markdown files to update [default: README.md and docs/*.md]")
    parser.add_argument("--images", type=Path, default=REPO / "docs" / "img", help="where plots go [default: docs/img]")
    parser.add_argument("--skip-missing", action="store_true", help="keep blocks whose comparison folder is missing")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document would change")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # the stamp names what rebuilds the block, not how this call was made (--check, --docs must not change it)
    command = shlex.join(["python", "scripts/make_docs.py", "--results", str(args.results)])
    try:
        updates = update_documents(
            args.docs or default_documents(REPO), args.results, args.images, command,
            skip_missing=args.skip_missing, write=not args.check,
        )
    except FedlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [u for u in updates if u.changed]
    for update in updates:
        if update.blocks or update.skipped:
            state = ("stale" if args.check else "updated") if update.changed else "current"
            kept = f"; kept {', '.join(update.skipped)}" if update.skipped else ""
            print(f"{update.path}: {len(update.blocks)} block(s) {state}{kept}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
