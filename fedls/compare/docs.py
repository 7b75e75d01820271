"""Generated blocks in Markdown documents: tables and figures rebuilt from comparison folders.

A document marks what is generated; everything outside the markers is hand-written and kept::

    <!-- generated:defense-comparison/table -->
    (replaced on every regeneration)
    <!-- /generated:defense-comparison/table -->

The name is ``<comparison>/<kind>``: ``<comparison>`` is a folder written by ``fedls compare``
below the results folder, ``<kind>`` one of

* ``table`` — mean ± sd over seeds with the paired change against the baseline,
* ``tests`` — every change with its 95 % interval, p-values and verdict,
* ``plot`` — the utility–privacy plot, written to ``<image dir>/<comparison>.png`` and linked,
* ``claims`` — the directions listed in ``<results>/claims.toml`` (published claims, see
  :mod:`fedls.compare.claims`) judged against this comparison's paired tests,
* ``verdicts`` — the same claims against several comparisons at once, one column each; the
  name joins the comparisons with ``+`` (``digits-a+fashion-b/verdicts``),
* ``contrast`` — whether each setting's effect differs between exactly two comparisons (e.g.
  two client recipes): ``digits-a+digits-b/contrast`` (see :mod:`fedls.compare.contrast`),
* ``report`` — for a single run directory (e.g. the README's main job) instead of a comparison:
  ``fedls report``'s utility and leakage table against the baselines.

Every block ends with a stamp: the fedls version and commit that made the runs, the seeds, the
command that made them and the command that regenerated the block. Regenerating from the same
results gives the same text (no dates), so ``--check`` can tell whether documents are current.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fedls.compare.claims import Claim, claims_markdown, claims_matrix, read_claims
from fedls.compare.contrast import contrast_markdown
from fedls.compare.plot import utility_privacy_plot
from fedls.compare.results import ComparisonStats, load_results
from fedls.compare.runner import stamp
from fedls.compare.table import ResultTable
from fedls.errors import ConfigError
from fedls.outputs import write_atomic
from fedls.studies.reports import read_run_files, report_markdown, report_run

log = logging.getLogger(__name__)
KINDS = ("table", "tests", "plot", "claims", "verdicts", "contrast", "report")
CLAIMS_FILE = "claims.toml"
STUDY_JOIN = "+"  # joins the comparisons of a ``verdicts`` or ``contrast`` block
_NAME = r"[A-Za-z0-9._+-]+/[a-z]+"
BLOCK = re.compile(rf"<!-- generated:(?P<name>{_NAME}) -->\n(?P<body>.*?)<!-- /generated:(?P=name) -->", re.S)
OPENING = re.compile(rf"<!-- generated:({_NAME}) -->")
CLOSING = re.compile(rf"<!-- /generated:({_NAME}) -->")


@dataclass
class DocUpdate:
    path: Path
    blocks: list[str]
    changed: bool
    skipped: list[str]  # blocks whose results are missing (left as they were)


def _check_markers(text: str, path: Path) -> None:
    opened, closed = OPENING.findall(text), CLOSING.findall(text)
    matched = [m.group("name") for m in BLOCK.finditer(text)]
    for name in opened + closed:
        if opened.count(name) != closed.count(name) or matched.count(name) != opened.count(name):
            raise ConfigError(f"{path}: marker generated:{name} is not closed by <!-- /generated:{name} --> on its own line")


def _split(name: str, path: Path) -> tuple[str, str]:
    comparison, kind = name.rsplit("/", 1)
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown generated block kind {kind!r} in {name}; use {', '.join(KINDS)}")
    return comparison, kind


class Generator:
    """Renders blocks from ``results`` (one folder per comparison), caching each comparison."""

    def __init__(self, results: Path, image_dir: Path, command: str, write_images: bool = True) -> None:
        self.results = results
        self.image_dir = image_dir
        self.command = command
        self.write_images = write_images  # off for --check: compare the text, leave files alone
        self._stats: dict[str, ComparisonStats] = {}

    def available(self, comparison: str) -> bool:
        """Whether the results hold ``comparison`` (every one of them, for ``a+b``)."""
        return all(
            (self.results / name / "comparison.json").is_file() or (self.results / name / "summary.json").is_file()
            for name in comparison.split(STUDY_JOIN)
        )

    def run_report(self, name: str) -> str:
        """A single run's report, stamped with the code that made it and how it was run."""
        run = self.results / name
        report = report_run(run)
        summary = read_run_files(run).summary or {}
        stamp = (f"<sub>fedls {summary.get('fedls_version', '?')} at commit {summary.get('git_commit', '?')}, "
                 f"{summary.get('seconds', '?')} s, status {summary.get('status', '?')}. "
                 f"Regenerate: `{self.command}` (from `{name}/`).</sub>")
        # the report's headings sit below the document's own section: two levels down
        body = "\n".join(f"##{line}" if line.startswith("#") else line for line in report_markdown(report).splitlines())
        return f"{body}\n\n{stamp}\n"

    def stats(self, comparison: str) -> ComparisonStats:
        if comparison not in self._stats:
            self._stats[comparison] = load_results(self.results / comparison)
        return self._stats[comparison]

    def claims(self, document: Path, name: str) -> list[Claim]:
        path = self.results / CLAIMS_FILE
        if not path.is_file():
            raise ConfigError(f"{document}: block {name} needs {path}; write the claims there (see fedls.compare.claims)")
        return read_claims(path)

    def verdicts(self, comparisons: list[str], document: Path, name: str) -> str:
        body = claims_matrix({c: self.stats(c) for c in comparisons}, self.claims(document, name))
        sources = ", ".join(f"`{c}/`" for c in comparisons)
        stamp = f"<sub>Judged from {sources} (their runs are stamped under their own tables). Regenerate: `{self.command}`.</sub>"
        return f"{body}\n{stamp}\n"

    def contrast(self, comparisons: list[str], document: Path, name: str) -> str:
        if len(comparisons) != 2:
            raise ConfigError(f"{document}: block {name} contrasts exactly two comparisons joined by "
                              f"{STUDY_JOIN!r} (got {len(comparisons)})")
        first, second = ((c, self.stats(c)) for c in comparisons)
        body = contrast_markdown(first, second)
        sources = " and ".join(f"`{c}/`" for c in comparisons)
        stamp = f"<sub>From {sources} (their runs are stamped under their own tables). Regenerate: `{self.command}`.</sub>"
        return f"{body}\n{stamp}\n"

    def stamp(self, comparison: str) -> str:
        return f"<sub>{stamp(self.stats(comparison))} Regenerate: `{self.command}` (from `{comparison}/`).</sub>"

    def render(self, name: str, document: Path) -> str:
        comparison, kind = _split(name, document)
        if kind == "report":
            return self.run_report(comparison)
        if kind == "verdicts":
            return self.verdicts(comparison.split(STUDY_JOIN), document, name)
        if kind == "contrast":
            return self.contrast(comparison.split(STUDY_JOIN), document, name)
        stats = self.stats(comparison)
        table = ResultTable(stats)
        if kind == "table":
            body = table.main_markdown() + "\n" + table.legend()
        elif kind == "tests":
            body = table.tests_markdown()
        elif kind == "claims":
            body = claims_markdown(stats, self.claims(document, name))
        else:
            image = self.image_dir / f"{comparison}.png"
            if self.write_images:
                self.image_dir.mkdir(parents=True, exist_ok=True)
                utility_privacy_plot(stats, image)
            link = Path(os.path.relpath(image.resolve(), document.resolve().parent)).as_posix()
            body = f"![{stats.manifest.name}: utility vs privacy]({link})\n"
        return f"{body}\n{self.stamp(comparison)}\n"


def update_document(path: Path, generator: Generator, skip_missing: bool = False, write: bool = True) -> DocUpdate:
    """Replace every generated block of ``path``; text outside the markers is kept byte for byte."""
    text = path.read_text()
    _check_markers(text, path)
    names: list[str] = []
    skipped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        comparison, _ = _split(name, path)
        if not generator.available(comparison):
            if not skip_missing:
                raise ConfigError(
                    f"{path}: block {name} needs {generator.results / comparison}/comparison.json; "
                    "pass the folder that holds it with --results, or --skip-missing"
                )
            skipped.append(name)
            return match.group(0)
        names.append(name)
        return f"<!-- generated:{name} -->\n{generator.render(name, path)}<!-- /generated:{name} -->"

    new = BLOCK.sub(replace, text)
    changed = new != text
    if changed and write:
        write_atomic(path, new)
    for name in skipped:
        log.warning("%s: kept block %s (no results for it)", path, name)
    return DocUpdate(path, names, changed, skipped)


def update_documents(
    paths: Iterable[Path], results: Path, image_dir: Path, command: str, skip_missing: bool = False, write: bool = True,
) -> list[DocUpdate]:
    if not results.is_dir():
        raise ConfigError(f"--results {results} is not a folder; pass the folder that holds the comparison folders")
    generator = Generator(results, image_dir, command, write_images=write)
    return [update_document(p, generator, skip_missing, write) for p in paths]
