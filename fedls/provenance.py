"""Which code produced a result: the fedls version and the git commit of the source tree.

Written into every run's ``summary.json`` and every comparison's ``results.csv`` so that a
number in the documentation can be traced to the code that made it. The commit carries a
``-dirty`` suffix when tracked files differ from it (the numbers then come from uncommitted
code, and the commit alone would not reproduce them); ``unknown`` when fedls does not run from
its own git checkout (an installed wheel, or git missing).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import fedls

log = logging.getLogger(__name__)
UNKNOWN = "unknown"
# the checkout that holds this package: fedls/provenance.py → fedls/ → repository root
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("git %s failed: %s", " ".join(args), exc)
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(root: Path = SOURCE_ROOT) -> str:
    """The HEAD commit of the checkout that holds ``root`` (``-dirty`` if tracked files changed).

    ``root`` must be the top of that checkout: an installed copy of fedls that happens to sit
    inside some other repository (e.g. a virtual environment in a project) must not report that
    repository's commit.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return UNKNOWN
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return UNKNOWN
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    if changes is None:
        return UNKNOWN  # cannot tell whether the tree is the commit
    return f"{commit}-dirty" if changes else commit


def provenance() -> dict[str, str]:
    """``{"fedls_version": ..., "git_commit": ...}`` for the code running now.

    Asked afresh on every call (three short git commands): a comparison runs for hours in one
    process while the checkout may change underneath it, and a cached answer would stamp later
    runs with an earlier commit.
    """
    return {"fedls_version": fedls.__version__, "git_commit": git_commit()}
