"""`fedls compare`: experiment files and their schema, seeds and statistics, the tables, plot and
HParams, resuming after a crash, provenance, and the documentation generator."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedls.cli import app
from fedls.compare import load_experiment, load_results, quick_experiment, run_comparison
from fedls.compare.docs import update_documents
from fedls.compare.experiment import build_experiment, parse_setting_spec
from fedls.compare.plot import Point, draw_points, label_zoom_box, zoom_region
from fedls.compare.results import Manifest, SettingInfo, acc1_counts
from fedls.compare.table import MISSING, ResultTable
from fedls.config import RunConfig
from fedls.errors import CheckpointError, ConfigError, FedlsError
from fedls.federation.server import RunInterrupted
from fedls.provenance import git_commit, provenance
from fedls.run_dir import RunDirectory

TINY = {"dataset": "digits", "clients": 2, "rounds": 2, "local_epochs": 1, "batch_size": 32, "seed": 3, "device": "cpu"}
REPO = Path(__file__).resolve().parents[1]
cli = CliRunner()


def tiny_experiment(out: Path, seeds: list[int] | None = None):
    base = {k: v for k, v in TINY.items() if not (seeds is not None and k == "seed")}
    return build_experiment(
        base, [{"name": "base"}, {"name": "ls-neg", "alpha": -0.05, "warmup_rounds": 1, "ramp_rounds": 0}], out, seeds=seeds,
    )


def rows_of(result_csv: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["setting"], r["metric"]): r for r in csv.DictReader(result_csv.open())}


def test_compare_end_to_end_and_resume(tmp_path):
    """Real simulations: 2 settings × 2 clients × 2 rounds, then a crash and a resume."""
    experiment = tiny_experiment(tmp_path / "cmp")
    events = []
    result = run_comparison(experiment, on_progress=events.append, observer_factory=lambda *a: [], command="fedls compare test")
    assert [o.status for o in result.outcomes] == ["complete", "complete"]
    assert [(e.setting, e.seed, e.round) for e in events if e.kind == "round"] == [
        (s, 3, r) for s in ("base", "ls-neg") for r in (0, 1, 2)
    ]

    rows = rows_of(result.csv)
    final = RunDirectory(tmp_path / "cmp" / "ls-neg" / "seed-3").summary()["final"]
    assert float(rows[("ls-neg", "test_acc")]["mean"]) == pytest.approx(final["global/accuracy"])
    base_acc = float(rows[("base", "test_acc")]["mean"])
    assert float(rows[("ls-neg", "test_acc")]["delta"]) == pytest.approx(final["global/accuracy"] - base_acc)
    assert rows[("ls-neg", "test_acc")]["p"] == ""  # one seed: no test, nothing invented
    assert rows[("base", "attack_acc1")]["mean"] == "" and rows[("base", "epsilon")]["mean"] == ""  # not measured
    assert rows[("base", "test_acc")]["fedls_version"] == provenance()["fedls_version"]
    manifest = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert manifest["seeds"] == [3] and manifest["command"] == "fedls compare test"
    assert set(manifest["runs"]) == {"base/seed-3", "ls-neg/seed-3"}
    markdown = result.markdown.read_text()
    assert "| base |" in markdown and MISSING in markdown and "Test Acc" in markdown and "not tested (1 paired seed)" in markdown
    assert "seeds 3; command: `fedls compare test`" in markdown
    assert result.plot.read_bytes()[:4] == b"\x89PNG"
    events_files = sorted((result.hparams / "base" / "seed-3").rglob("events.out.tfevents.*"))
    assert events_files, "HParams entry for the baseline"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plugins = set()
    for file in events_files:
        acc = EventAccumulator(str(file))
        acc.Reload()
        try:
            plugins |= set(acc.PluginTagToContent("hparams"))
        except KeyError:  # the writer's other event file holds only the metric scalars
            pass
    assert "_hparams_/session_start_info" in plugins

    # a crash in the second setting: its directory is left "interrupted"
    second = RunDirectory(tmp_path / "cmp" / "ls-neg" / "seed-3")
    second.write_summary({**second.summary(), "status": "interrupted"})
    calls = []

    def counting(config, **kwargs):  # the rerun itself is simulated cheaply; resuming is what is tested
        calls.append(config.run_dir)
        return fake_simulate(set(), [])(config, **kwargs)

    again = run_comparison(experiment, simulate_fn=counting, observer_factory=lambda *a: [])
    assert calls == [str(tmp_path / "cmp" / "ls-neg")]  # only the missing run ran
    assert [o.status for o in again.outcomes] == ["skipped", "complete"]
    aside = again.outcomes[1].moved_aside
    assert aside is not None and aside.parent.name == "_aside" and aside.name == "ls-neg-seed-3-interrupted-1"
    assert json.loads((aside / "summary.json").read_text())["status"] == "interrupted"  # kept, not deleted
    assert RunDirectory(tmp_path / "cmp" / "ls-neg" / "seed-3").is_complete()


# Per (setting, seed): test accuracy and model-inversion Acc@1 of 20 attack images. The baseline
# logs the old key (mia/acc1), the other setting the new one: both are the same measure.
ACC = {"base": [0.70, 0.80, 0.82], "ls-neg": [0.80, 0.85, 0.90]}
ECE = {"base": [0.10, 0.20, 0.30], "ls-neg": [0.30, 0.10, 0.25]}
ACC1 = {"base": [0.80, 0.70, 0.75], "ls-neg": [0.50, 0.55, 0.60]}
SEEDS = [0, 1, 2]


def fake_simulate(fail_on: set[str], seen: list[str], seeds: list[int] = SEEDS):
    """Writes a run directory like simulate does; raises for the named settings mid-run."""

    def run(config: RunConfig, observer_factory=None, on_round=None):
        setting = Path(config.run_dir).name
        seen.append(setting)
        i = seeds.index(config.seed) if config.seed in seeds else 0
        run_dir = RunDirectory.create(config)
        record: dict[str, float] = {}
        for r in range(config.rounds + 1):
            record = {"round": r, "global/accuracy": ACC[setting][i] - 0.1 * (config.rounds - r), "global/ece": ECE[setting][i]}
            if r == config.rounds:
                key = "mia/acc1" if setting == "base" else "leakage/model_inversion/acc1"
                record[key] = ACC1[setting][i]
                record[key.replace("acc1", "num_images")] = 20
            run_dir.append_metrics(record)
            if setting in fail_on and r == 1:
                run_dir.write_summary({"status": "failed"})
                raise FedlsError("boom in on_round")
            if on_round:
                on_round(r, record)
        run_dir.write_summary({"status": "complete", "final": record})

    return run


def test_seeds_statistics_and_tests(tmp_path):
    experiment = tiny_experiment(tmp_path / "s", seeds=SEEDS)
    seen: list[str] = []
    result = run_comparison(experiment, simulate_fn=fake_simulate(set(), seen))
    assert seen == ["base", "ls-neg"] * 3  # seed-major: every setting of a seed before the next seed
    rows = rows_of(result.csv)

    acc = rows[("ls-neg", "test_acc")]
    assert acc["values"] == "0.8;0.85;0.9" and acc["seeds"] == "0;1;2" and acc["n"] == "3"
    assert float(acc["mean"]) == pytest.approx(0.85) and float(acc["sd"]) == pytest.approx(0.05)
    half = 4.302653 * 0.05 / math.sqrt(3)  # t(0.975, 2) · sd / √n
    assert (float(acc["ci_low"]), float(acc["ci_high"])) == pytest.approx((0.85 - half, 0.85 + half), abs=1e-5)
    # paired differences 0.10, 0.05, 0.08 → t = 5.2766 on 2 df → p = 1 − t/√(2 + t²) = 0.0341
    assert float(acc["delta"]) == pytest.approx(0.076667, abs=1e-6)
    assert float(acc["p"]) == pytest.approx(1 - 5.276562 / math.sqrt(2 + 5.276562**2), rel=1e-5)
    assert acc["significant"] == "true" and acc["test"] == "paired t"
    ece = rows[("ls-neg", "ece")]
    assert float(ece["p"]) > 0.05 and ece["significant"] == "false"
    assert rows[("base", "test_acc")]["delta"] == ""  # the baseline is not tested against itself

    # Acc@1: old and new key are one measure; 45/60 (baseline) vs 33/60 pooled over seeds
    acc1 = rows[("ls-neg", "attack_acc1")]
    assert acc1["measure"] == "leakage/model_inversion/acc1" and acc1["p"] != ""
    pooled = rows[("ls-neg", "attack_acc1_pooled")]
    p1, p2, pool = 33 / 60, 45 / 60, 78 / 120
    z = (p1 - p2) / math.sqrt(pool * (1 - pool) * (2 / 60))
    assert float(pooled["p"]) == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert pooled["n_pairs"] == "33/60 vs 45/60" and pooled["significant"] == "true"
    assert rows[("base", "attack_acc1_pooled")]["measure"] == "45/60 attack images"

    markdown = result.markdown.read_text()
    assert "85.0 ± 5.0 (+7.7*)" in markdown  # mean ± sd (paired change, * = significant)
    assert "| ls-neg | Test Acc ↑ | +7.7 |" in markdown and "| significant |" in markdown
    assert "| ls-neg | ECE ↓ |" in markdown and "inside the noise" in markdown
    assert "33/60 vs 45/60" in markdown
    assert "3/3 complete" in markdown


def test_paired_tests_use_only_seeds_both_settings_completed(tmp_path):
    experiment = tiny_experiment(tmp_path / "p", seeds=SEEDS)
    seen: list[str] = []

    def flaky(config, observer_factory=None, on_round=None):
        failing = {"ls-neg"} if config.seed == 1 else set()
        return fake_simulate(failing, seen)(config, observer_factory, on_round)

    result = run_comparison(experiment, simulate_fn=flaky)
    assert [o.status for o in result.failed] == ["failed"]
    rows = rows_of(result.csv)
    acc = rows[("ls-neg", "test_acc")]
    assert acc["seeds"] == "0;2" and acc["n_pairs"] == "2" and acc["status"] == "2/3 complete, 1 failed"
    assert float(acc["delta"]) == pytest.approx(((0.80 - 0.70) + (0.90 - 0.82)) / 2)


def test_failed_run_is_recorded_then_rerun(tmp_path):
    experiment = tiny_experiment(tmp_path / "c")
    seen: list[str] = []
    first = run_comparison(experiment, simulate_fn=fake_simulate({"ls-neg"}, seen, [3]))
    assert [o.status for o in first.outcomes] == ["complete", "failed"] and seen == ["base", "ls-neg"]
    assert rows_of(first.csv)[("ls-neg", "test_acc")]["status"] == "0/1 complete, 1 failed"
    assert not (first.hparams / "ls-neg").exists()  # HParams only for finished runs

    seen.clear()
    second = run_comparison(experiment, simulate_fn=fake_simulate(set(), seen, [3]))
    assert seen == ["ls-neg"]
    assert [o.status for o in second.outcomes] == ["skipped", "complete"]
    assert [p.name for p in (tmp_path / "c" / "_aside").iterdir()] == ["ls-neg-seed-3-failed-1"]
    assert float(rows_of(second.csv)[("ls-neg", "test_acc")]["delta"]) == pytest.approx(0.80 - 0.70)

    seen.clear()
    third = run_comparison(experiment, simulate_fn=fake_simulate(set(), seen, [3]))
    assert seen == [] and all(o.status == "skipped" for o in third.outcomes)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RunInterrupted])
def test_keyboard_interrupt_stops_and_resume_finishes(tmp_path, stop):
    """Ctrl-C inside a simulation surfaces as RunInterrupted; it stops the whole comparison."""
    experiment = tiny_experiment(tmp_path / "k")
    seen: list[str] = []

    def interrupted(config, observer_factory=None, on_round=None):
        if Path(config.run_dir).name == "ls-neg":
            RunDirectory.create(config).write_summary({"status": "interrupted"})
            raise stop("stopped")
        return fake_simulate(set(), seen, [3])(config, observer_factory, on_round)

    with pytest.raises(KeyboardInterrupt):
        run_comparison(experiment, simulate_fn=interrupted)
    assert (tmp_path / "k" / "results.csv").exists()  # written after the first run
    run_comparison(experiment, simulate_fn=fake_simulate(set(), seen, [3]))
    assert seen == ["base", "ls-neg"]
    assert (tmp_path / "k" / "_aside" / "ls-neg-seed-3-interrupted-1").is_dir()


def test_a_finished_run_of_another_configuration_is_not_reused(tmp_path):
    run_comparison(tiny_experiment(tmp_path / "c"), simulate_fn=fake_simulate(set(), [], [3]))
    other = build_experiment(
        {**TINY, "rounds": 3}, [{"name": "base"}, {"name": "ls-neg", "alpha": -0.05, "warmup_rounds": 1, "ramp_rounds": 0}],
        tmp_path / "c",
    )
    with pytest.raises(ConfigError, match="another configuration .*rounds"):
        run_comparison(other, simulate_fn=fake_simulate(set(), [], [3]))


def test_an_old_one_run_per_setting_folder_is_refused(tmp_path):
    (tmp_path / "o" / "base").mkdir(parents=True)
    (tmp_path / "o" / "base" / "config.toml").write_text("seed = 3\n")
    with pytest.raises(ConfigError, match="older comparison layout"):
        run_comparison(tiny_experiment(tmp_path / "o"), simulate_fn=fake_simulate(set(), [], [3]))


def test_experiment_validation(tmp_path):
    with pytest.raises(ConfigError, match="move shared options"):
        build_experiment(TINY, [{"name": "a", "rounds": 5}], tmp_path)
    with pytest.raises(ConfigError, match="bta"):
        build_experiment(TINY, [{"name": "a", "defense": "mid", "defense_options": {"bta": 1}}], tmp_path)
    with pytest.raises(ConfigError, match="used twice"):
        build_experiment(TINY, [{"name": "a"}, {"name": "a"}], tmp_path)
    with pytest.raises(ConfigError, match="baseline"):
        build_experiment(TINY, [{"name": "a"}], tmp_path, baseline="zzz")
    with pytest.raises(ConfigError, match="either base.seed or"):
        build_experiment(TINY, [{"name": "a"}], tmp_path, seeds=[0, 1])
    exp = build_experiment(TINY, [{"name": "a"}, {"name": "dp", "defense": "dp", "defense_options": {"epsilon": 5.0}}], tmp_path)
    assert exp.setting("dp").config.defense_options == {"epsilon": 5.0, "rounds": 2}
    assert exp.seeds == [3]
    assert [(c.run_dir, c.name, c.seed) for _, _, c in exp.runs()] == [
        (str(tmp_path / "a"), "seed-3", 3), (str(tmp_path / "dp"), "seed-3", 3),
    ]
    assert parse_setting_spec("mid=mid:beta=0.01,bottleneck=16@-0.05") == {
        "name": "mid", "defense": "mid", "defense_options": {"beta": 0.01, "bottleneck": 16}, "alpha": -0.05,
    }
    quick = quick_experiment(RunConfig(**TINY), ["none=none", "neg=none@-0.05"], tmp_path / "q", seeds=[4, 5])
    assert [s.config.alpha for s in quick.settings] == [0.0, -0.05] and quick.seeds == [4, 5]


def test_file_overrides_reach_the_settings(tmp_path):
    """--rounds and --seeds apply before the settings are derived: DP's ε is spread over the rounds that run."""
    plan = load_experiment(REPO / "experiments" / "defense_comparison.toml", out=tmp_path, seeds=[0, 1], overrides={"rounds": 2})
    assert plan.seeds == [0, 1]
    assert plan.setting("dp-eps8").config.rounds == 2 and plan.setting("dp-eps8").config.defense_options["rounds"] == 2


SHIPPED = sorted(p.name for p in (REPO / "experiments").glob("*.toml") if not p.stem.endswith("_gpu"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiment_files_validate(name, tmp_path):
    experiment = load_experiment(REPO / "experiments" / name, out=tmp_path)
    assert len(experiment.settings) >= 2
    assert len({s.config.dataset for s in experiment.settings}) == 1
    if name.startswith("acceptance_"):
        assert experiment.seeds == [0, 1, 2, 3, 4] and experiment.baseline == "alpha-0"
        by_name = {s.name: s.config for s in experiment.settings}
        assert [by_name[n].alpha for n in ("alpha-0.1", "alpha-0", "alpha-neg-0.05")] == [0.1, 0.0, -0.05]
        assert {c.defense for c in by_name.values()} == {"none", "mid", "bido", "dp"}
        paper = "seed001_recipe" in name
        assert {(c.optimizer, c.lr, c.max_grad_norm) for c in by_name.values()} == (
            {("adam", 0.001, 0.0)} if paper else {("sgd", 0.05, 1.0)}
        )
        assert all(c.warmup_rounds > 0 for c in by_name.values())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


GOOD_SETTINGS = '[[setting]]\nname = "a"\n[[setting]]\nname = "b"\nalpha = 0.1\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[experiment]\nout = 5\n' + GOOD_SETTINGS, "experiment.out: Input should be a valid string (got 5)"),
        ("base = 3\n" + GOOD_SETTINGS, "base: Input should be a valid dictionary (got 3)"),
        ('setting = "mid"\n', "setting: Input should be a valid list"),
        ('setting = ["mid"]\n', "setting.0: Input should be a valid dictionary"),
        ('[experiment]\nbaseline = 3\n' + GOOD_SETTINGS, "experiment.baseline: Input should be a valid string"),
        ('[experiment]\nsead = [1]\n' + GOOD_SETTINGS, "experiment.sead: unknown option"),
        ('[bogus]\nx = 1\n' + GOOD_SETTINGS, "bogus: unknown option"),
        ('[experiment]\nseeds = [0, 0]\n' + GOOD_SETTINGS, "seeds must not repeat"),
        ('[experiment]\nseeds = [true]\n' + GOOD_SETTINGS, "experiment.seeds.0: Input should be a valid integer"),
        ('[experiment]\nseeds = [-1]\n' + GOOD_SETTINGS, "experiment.seeds.0: Input should be greater than or equal to 0"),
        ('[[setting]]\nname = "a b"\n', "setting.0.name: String should match pattern"),
        ('[[setting]]\nname = "a"\nalpah = 0.1\n[[setting]]\nname = "b"\n', "alpah"),
        ('[experiment]\nseeds = [0, 1]\n[base]\nseed = 2\n' + GOOD_SETTINGS, "either base.seed or"),
    ],
)
def test_bad_experiment_files_are_one_line_exit_2(tmp_path, text, message):
    path = write(tmp_path, text)
    result = cli.invoke(app, ["compare", "--experiment", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0,x"], "seeds.1: Input should be a valid integer (got 'x')"),
        (["--seeds", "0,1", "--seed", "2"], "give --seed or --seeds, not both"),
        (["--seeds", ""], "give at least one seed"),
        (["--rounds", "0"], "rounds: Input should be greater than or equal to 1 (got 0)"),
        (["--device", "tpu"], "device: String should match pattern"),
        (["--baseline", "nope"], "no setting named 'nope'"),
        (["--config", "x.toml"], "--config is for ad-hoc"),
    ],
)
def test_bad_compare_options_are_one_line_exit_2(tmp_path, args, message):
    path = write(tmp_path, GOOD_SETTINGS)
    result = cli.invoke(app, ["compare", "--experiment", str(path), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_compare_out_pointing_at_a_file_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, GOOD_SETTINGS)
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    for args in (["--experiment", str(path)], ["-s", "a=none", "-s", "b=none@0.1"]):
        result = cli.invoke(app, ["compare", *args, "--out", str(taken)])
        assert result.exit_code == 2, result.output
        assert "is a file; pass a folder" in result.output and "Traceback" not in result.output
    in_file = write(tmp_path, f'[experiment]\nout = "{taken}"\n' + GOOD_SETTINGS)
    result = cli.invoke(app, ["compare", "--experiment", str(in_file)])
    assert result.exit_code == 2 and "is a file; pass a folder" in result.output
    one = cli.invoke(app, ["compare", "-s", "a=none"])
    assert one.exit_code == 2 and "at least two --setting" in one.output


def point(name: str, x: float, y: float) -> Point:
    return Point(name, x, y, 0.01, 0.005, 5, False, "black")


def test_zoom_keeps_an_outlier_from_squashing_the_others():
    bulk = [point("ls-0", 0.84, 0.984), point("ls+0.1", 0.89, 0.982), point("ls-0.05", 0.73, 0.964), point("mid", 0.80, 0.975)]
    region = zoom_region([*bulk, point("dp", 0.10, 0.43)])
    assert region is not None
    (x0, x1), (y0, y1) = region
    assert all(x0 < p.x < x1 and y0 < p.y < y1 for p in bulk)
    assert not (x0 < 0.10 < x1) and y0 > 0.9  # DP is outside, the bulk fills the panel
    assert zoom_region(bulk) is None  # nothing to zoom when no point stands apart


def test_overview_axes_stay_within_the_percent_scale():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        wide = Point("few seeds", 0.02, 0.99, 0.08, 0.06, 2, False, "black")
        draw_points(ax, [wide, point("dp", 0.60, 0.43)])
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    finally:
        plt.close(fig)
    assert x0 >= -2.0 and y1 <= 102.0  # margins alone would reach about −7 % and 107 %
    assert x1 > 60 and y0 < 43  # every point is still inside


def test_zoom_box_label_stays_inside_the_frame():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        ax.set_xlim(50, 100)
        ax.set_ylim(30, 102)
        label_zoom_box(ax, ((0.66, 1.2), (0.988, 1.005)))  # box at the top edge, reaching past the right one
        (top,) = ax.texts
        ax.set_ylim(0, 102)
        label_zoom_box(ax, ((0.6, 0.8), (0.4, 0.5)))  # room above the box
        below = ax.texts[1]
    finally:
        plt.close(fig)
    assert top.xy == pytest.approx((100, 98.8)) and top.get_va() == "top"  # below the box, at the frame's right edge
    assert below.xy == pytest.approx((80, 50)) and below.get_va() == "bottom"


def test_acc1_counts_read_old_and_new_keys():
    assert acc1_counts([{"mia/acc1": 0.75, "mia/num_images": 20}, {"global/accuracy": 0.9}]) == (15, 20)
    assert acc1_counts([{"leakage/model_inversion/acc1": 0.5, "leakage/model_inversion/num_images": 50}]) == (25, 50)
    assert acc1_counts([{"leakage/model_inversion/acc1": 0.4, "diagnostics/model_inversion/num_images": 10}]) == (4, 10)
    assert acc1_counts([{"mia/acc1": 0.75}]) is None  # runs from before num_images was logged
    assert acc1_counts([{"mia/acc1": 0.333, "mia/num_images": 10}]) is None  # not a count: never rounded into one


def fake_comparison(root: Path, name: str = "cmp") -> Path:
    out = root / name
    run_comparison(tiny_experiment(out, seeds=SEEDS), simulate_fn=fake_simulate(set(), []), command="fedls compare -e x.toml")
    return out


def test_docs_generator_replaces_only_marked_blocks(tmp_path):
    results = tmp_path / "results"
    fake_comparison(results)
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir()
    prose_before, prose_between, prose_after = "# Title\n\nHand-written intro.\n\n", "\nMore prose.\n\n", "\nThe end.\n"
    doc.write_text(
        prose_before + "<!-- generated:cmp/table -->\nold table\n<!-- /generated:cmp/table -->\n" + prose_between
        + "<!-- generated:cmp/tests -->\n<!-- /generated:cmp/tests -->\n"
        "<!-- generated:cmp/plot -->\nold\n<!-- /generated:cmp/plot -->\n"
        + prose_after
    )
    images = tmp_path / "docs" / "img"
    [update] = update_documents([doc], results, images, "python scripts/make_docs.py --results results")
    assert update.changed and update.blocks == ["cmp/table", "cmp/tests", "cmp/plot"]
    text = doc.read_text()
    assert text.startswith(prose_before) and prose_between in text and text.endswith(prose_after)
    assert "old table" not in text and "85.0 ± 5.0 (+7.7*)" in text and "inside the noise" in text
    assert "![comparison: utility vs privacy](img/cmp.png)" in text and (images / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    code = provenance()
    stamp = (f"Runs made by fedls {code['fedls_version']} at commit {code['git_commit']}; seeds 0, 1, 2; "
             "command: `fedls compare -e x.toml`.")
    assert text.count(stamp) == 3  # every block says which code, seeds and command made it
    assert "Regenerate: `python scripts/make_docs.py --results results`" in text
    # same results → same text: a second run changes nothing
    [again] = update_documents([doc], results, images, "python scripts/make_docs.py --results results")
    assert not again.changed and doc.read_text() == text


def test_docs_generator_errors_and_check_mode(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_docs", REPO / "scripts" / "make_docs.py")
    make_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_docs)

    results = tmp_path / "results"
    fake_comparison(results)
    doc = tmp_path / "page.md"
    doc.write_text("<!-- generated:cmp/table -->\n<!-- /generated:cmp/table -->\n"
                   "<!-- generated:gone/table -->\nkept\n<!-- /generated:gone/table -->\n")
    argv = ["--results", str(results), "--docs", str(doc), "--images", str(tmp_path / "img")]
    assert make_docs.main(argv) == 2  # gone/ has no results
    assert make_docs.main([*argv, "--skip-missing", "--check"]) == 1  # stale, nothing written
    assert "<!-- generated:cmp/table -->\n<!-- /generated:cmp/table -->" in doc.read_text()
    assert make_docs.main([*argv, "--skip-missing"]) == 0
    assert "kept" in doc.read_text() and "Test Acc" in doc.read_text()
    assert make_docs.main([*argv, "--skip-missing", "--check"]) == 0  # now current
    doc.write_text("<!-- generated:cmp/table -->\nnever closed\n")
    with pytest.raises(ConfigError, match="not closed"):
        update_documents([doc], results, tmp_path / "img", "cmd")
    doc.write_text("<!-- generated:cmp/figure -->\n<!-- /generated:cmp/figure -->\n")
    with pytest.raises(ConfigError, match="unknown generated block kind"):
        update_documents([doc], results, tmp_path / "img", "cmd")


def test_results_read_back_equal_what_compare_wrote(tmp_path):
    out = fake_comparison(tmp_path)
    stats = load_results(out)
    assert ResultTable(stats).to_csv() == (out / "results.csv").read_text()
    with pytest.raises(CheckpointError, match="no comparison.json"):
        load_results(tmp_path)


def test_single_seed_table_without_spread():
    manifest = Manifest("m", "a", [0], [SettingInfo("a", "none", 0.0), SettingInfo("b", "none", 0.1)])
    from fedls.compare.results import RunResult, analyse

    runs = {
        ("a", 0): RunResult("a", 0, "complete", {"global/accuracy": 0.9}),
        ("b", 0): RunResult("b", 0, "complete", {"global/accuracy": 0.8, "mia/delta_face": 2.0}),
    }
    table = ResultTable(analyse(manifest, runs))
    cells = table.cells(table.stats.rows[1])
    assert "80.0 (-10.0)" in cells and "2.00" in cells  # δ_face of b has no δ_face baseline: no change shown


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_provenance_names_the_commit_and_a_dirty_tree(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_commit(repo) == "unknown"  # not a checkout
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    (repo / "f.txt").write_text("1")
    git(repo, "add", "f.txt")
    git(repo, "commit", "-q", "-m", "c")
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(repo) == head
    (repo / "f.txt").write_text("2")
    assert git_commit(repo) == f"{head}-dirty"
    inner = repo / "sub"
    inner.mkdir()
    assert git_commit(inner) == "unknown"  # a copy inside another project's checkout is not that project
    assert set(provenance()) == {"fedls_version", "git_commit"}


def test_a_full_disk_stops_the_comparison_instead_of_failing_every_later_setting(tmp_path):
    from fedls.run_dir import OutputError

    experiment = tiny_experiment(tmp_path / "d")
    tried: list[str] = []

    def disk_full(config, observer_factory=None, on_round=None):
        tried.append(Path(config.run_dir).name)
        raise OutputError("no space left on device writing x; free space and rerun")

    with pytest.raises(OutputError, match="no space left"):
        run_comparison(experiment, simulate_fn=disk_full)
    assert tried == ["base"]  # the second setting was not started


def test_the_stamp_names_the_seeds_that_ran_when_some_are_missing():
    from fedls.compare.results import Manifest, SettingInfo
    from fedls.compare.runner import _seeds_run

    provenance = {"fedls_version": "0", "git_commit": "abc"}
    settings = [SettingInfo("base", "none", 0.0), SettingInfo("ls", "none", -0.05)]
    runs = {f"{s}/seed-{n}": provenance for s in ("base", "ls") for n in (0, 1)}
    partial = Manifest("m", "base", [0, 1, 2], settings, runs=runs)
    assert _seeds_run(partial) == "seeds 0, 1 so far of the planned 0, 1, 2"
    partial.runs["base/seed-2"] = provenance  # one setting of seed 2 is enough to name the seed
    assert _seeds_run(partial) == "seeds 0, 1, 2"
    assert _seeds_run(Manifest("m", "base", [0, 1], [])) == "seeds 0, 1"  # older folders record no runs
