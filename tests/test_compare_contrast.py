"""A setting's effect in one study against its effect in another (fedls.compare.contrast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedls.compare.claims import format_p
from fedls.compare.contrast import CONTRAST_METRICS, contrast_markdown, effect_per_seed
from fedls.compare.docs import update_documents
from fedls.compare.results import COLUMNS, ComparisonStats, load_results
from fedls.errors import ConfigError
from fedls.stats import welch_test

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
KEY_OF = {c.label: c.key for c in COLUMNS}


@pytest.fixture(scope="module")
def recipes() -> tuple[ComparisonStats, ComparisonStats]:
    return load_results(RESULTS / "digits-default-recipe"), load_results(RESULTS / "digits-seed001-recipe")


def test_each_effect_is_the_study_s_own_paired_change(recipes: tuple[ComparisonStats, ComparisonStats]) -> None:
    for stats in recipes:
        for row in stats.rows:
            if row.info.name == stats.baseline:
                continue
            for metric in CONTRAST_METRICS:
                effect, test = effect_per_seed(stats, row.info.name, metric), row.metrics[metric].test
                assert test is not None and len(effect) == test.n
                assert sum(effect) / len(effect) == pytest.approx(test.mean_diff)


def test_the_difference_of_effects_is_welch_tested_row_by_row(recipes: tuple[ComparisonStats, ComparisonStats]) -> None:
    default, adam = recipes
    text = contrast_markdown(("default", default), ("adam", adam))
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "Setting" not in line]
    shared = [r.info.name for r in default.rows if r.info.name != default.baseline]
    assert [(r[0].strip(), KEY_OF[r[1].strip()]) for r in rows] == [(s, m) for s in shared for m in CONTRAST_METRICS]
    significant = 0
    for setting, label, *_, p, verdict in rows:
        metric = KEY_OF[label.strip()]
        test = welch_test(effect_per_seed(default, setting.strip(), metric), effect_per_seed(adam, setting.strip(), metric))
        assert p.strip() == format_p(test.p)
        assert ("differs" in verdict) == test.significant
        significant += test.significant
    assert 0 < significant < len(rows)  # these studies have both kinds, so neither branch is dead here
    # the order of the studies flips the sign of the difference, not the test
    flipped = contrast_markdown(("adam", adam), ("default", default))
    assert [line.split("|")[-3] for line in flipped.splitlines() if line.startswith("| a")] == \
        [line.split("|")[-3] for line in text.splitlines() if line.startswith("| a")]


def test_a_metric_measured_differently_in_the_two_studies_is_not_contrasted(
    recipes: tuple[ComparisonStats, ComparisonStats],
) -> None:
    import copy

    default, adam = recipes
    other = copy.deepcopy(adam)
    other.row("mid").metrics["attack_acc1"].measure = 1  # as if its Acc@1 came from another measure
    rows = [line for line in contrast_markdown(("a", default), ("b", other)).splitlines() if line.startswith("| mid ")]
    assert [r.split("|")[2].strip() for r in rows] == ["Test Acc ↑"]


def test_studies_without_a_shared_setting_say_so(recipes: tuple[ComparisonStats, ComparisonStats]) -> None:
    default, _ = recipes
    only_baseline = ComparisonStats(default.manifest, [default.row(default.baseline)])
    assert "share no setting" in contrast_markdown(("a", default), ("b", only_baseline))


def test_a_contrast_block_names_exactly_two_studies(tmp_path: Path) -> None:
    doc = tmp_path / "page.md"
    three = "digits-default-recipe+digits-seed001-recipe+fashion-mnist-default-recipe/contrast"
    doc.write_text(f"<!-- generated:{three} -->\n<!-- /generated:{three} -->\n")
    with pytest.raises(ConfigError, match="exactly two"):
        update_documents([doc], RESULTS, tmp_path / "img", "cmd", write=False)
    two = "digits-default-recipe+digits-seed001-recipe/contrast"
    doc.write_text(f"<!-- generated:{two} -->\n<!-- /generated:{two} -->\n")
    (update,) = update_documents([doc], RESULTS, tmp_path / "img", "cmd")
    assert update.changed and "p (Welch)" in doc.read_text() and "`digits-default-recipe/`" in doc.read_text()


def test_the_contrast_command_prints_the_table_and_refuses_bad_folders(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedls.cli import app

    runner = CliRunner()
    default, adam = str(RESULTS / "digits-default-recipe"), str(RESULTS / "digits-seed001-recipe")
    result = runner.invoke(app, ["contrast", default, adam])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == contrast_markdown(
        (default, load_results(RESULTS / "digits-default-recipe")), (adam, load_results(RESULTS / "digits-seed001-recipe"))
    ).strip()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "comparison.json").write_text("{ not json")
    for args, message in (([default, default], "given twice"), ([default, str(tmp_path)], "no comparison.json"),
                          ([str(corrupt), adam], "cannot read")):
        bad = runner.invoke(app, ["contrast", *args])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1
