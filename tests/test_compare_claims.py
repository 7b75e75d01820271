"""Published claims judged against a comparison's paired tests (fedls.compare.claims)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedls.compare.claims import judge, read_claims
from fedls.compare.results import COLUMNS, MetricStats
from fedls.errors import ConfigError
from fedls.stats import PairedTest

ACC1 = next(c for c in COLUMNS if c.key == "attack_acc1")


def _stats(mean_diff: float, p: float | None, n: int = 5) -> MetricStats:
    test = PairedTest(n, mean_diff, 0.01, mean_diff - 0.01, mean_diff + 0.01, 1.0, p, None)
    return MetricStats(ACC1, 0, test=test)


@pytest.mark.parametrize(
    ("diff", "p", "direction", "verdict"),
    [
        (-0.13, 0.03, "lower", "holds"),
        (-0.13, 0.03, "higher", "contradicted"),
        (+0.02, 0.40, "higher", "not shown (inside the noise)"),
        (-0.20, None, "lower", "not shown (not testable with 5 paired seeds)"),
    ],
)
def test_a_claim_holds_only_when_the_change_is_significant_and_goes_the_claimed_way(
    diff: float, p: float | None, direction: str, verdict: str
) -> None:
    assert judge(_stats(diff, p), direction) == verdict


def test_a_baseline_without_a_test_is_not_shown() -> None:
    assert judge(MetricStats(ACC1, 0), "lower").startswith("not shown (not testable with 0 paired seeds")


def test_claims_file_is_checked_by_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "claims.toml"
    path.write_text('[[claim]]\nsetting = "a"\nmetric = "attack_acc1"\ndirection = "lower"\nsource = "X et al. 2024"\n')
    assert read_claims(path)[0].direction == "lower"
    path.write_text('[[claim]]\nsetting = "a"\nmetric = "acc"\ndirection = "lower"\nsource = "X"\n')
    with pytest.raises(ConfigError, match="unknown metric"):
        read_claims(path)
    path.write_text('[[claim]]\nsetting = "a"\nmetric = "attack_acc1"\ndirection = "down"\nsource = "X"\n')
    with pytest.raises(ConfigError, match="direction"):
        read_claims(path)


def test_the_verdict_matrix_judges_every_claim_in_every_study_as_its_own_claims_table_does() -> None:
    """docs/results: one column per study; each cell carries the verdict the study's own claims block gives."""
    from fedls.compare.claims import claims_markdown, claims_matrix, verdict_tally
    from fedls.compare.results import load_results

    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    names = ["digits-default-recipe", "fashion-mnist-default-recipe"]
    studies = {name: load_results(results / name) for name in names}
    claims = read_claims(results / "claims.toml")
    matrix = claims_matrix(studies, claims)
    header, _, *rows = [line for line in matrix.splitlines() if line.startswith("|")]
    assert header.split("|")[3:5] == [" `digits-default-recipe` ", " `fashion-mnist-default-recipe` "]
    assert len(rows) == len(claims)
    for name, column in zip(names, (3, 4), strict=True):
        single = [line for line in claims_markdown(studies[name], claims).splitlines() if line.startswith("| ") and "**" in line]
        for row, own in zip(rows, single, strict=True):
            verdict = own.rsplit("**", 2)[1]
            assert row.split("|")[column].strip().startswith(f"**{verdict}**"), (name, row)
    for row in rows:  # the last column tallies the verdicts of the study columns
        cells = [cell.strip() for cell in row.split("|")[3:5]]
        verdicts = [cell.split("**")[1] for cell in cells if cell != "–"]
        assert row.split("|")[5].strip() == verdict_tally(verdicts)
        assert sum(int(part.split(" of ")[0].rsplit(" ", 1)[1]) for part in verdict_tally(verdicts).split(", ")) == len(verdicts)


def test_verdict_tally_counts_each_kind_once_in_a_fixed_order() -> None:
    from fedls.compare.claims import verdict_tally

    verdicts = ["not shown (inside the noise)", "holds", "not shown (not testable with 1 paired seed)", "contradicted"]
    assert verdict_tally(verdicts) == "holds 1 of 4, contradicted 1 of 4, not shown 2 of 4"
    assert verdict_tally(["holds", "holds"]) == "holds 2 of 2"


def test_a_claim_that_no_study_can_judge_is_left_out() -> None:
    from fedls.compare.claims import Claim, claims_matrix
    from fedls.compare.results import load_results

    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    study = load_results(results / "digits-default-recipe")
    claim = Claim(setting="no-such-setting", metric="attack_acc1", direction="lower", source="nobody 2020")
    assert claims_matrix({"digits": study}, [claim]).startswith("No claim")
