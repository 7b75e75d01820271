"""The analysis instruments on the bundled digits: the measurements in docs/analysis.md.

One study, five generated blocks of docs/analysis.md, all rendered from one result file
(``--out``, default docs/results/analysis.json):

* ``toy``: ``fedls toy --num-seeds N`` (default geometry, α ∈ {0, 0.05, −0.05}) and the same
  for α ∈ {0, 0.05} from the green centre itself (``--start``);
* ``runs``: the small federated runs the other instruments read, trained with the library
  (``fedls.federation.simulation.simulate``; digits, ``cnn``, α ∈ {0, 0.1, −0.05}, one run per
  α and seed, ``attacks="none"``) into a temporary folder (``--keep-runs DIR`` keeps them);
* ``embeddings``: ``fedls embeddings`` on the three runs of each seed;
* ``robustness``: ``fedls robustness RUN --reference <the α = 0 run of the same seed>`` per run;
* ``stages``: ``fedls stages`` on the three runs of each seed (α = 0 first).

The instruments run as the documented commands (``.venv/bin/fedls``, one torch thread each), so
the commands in the document are the ones measured. Comparisons between α are paired by seed
(same seed = same data split, partition and initialisation) and reported with the mean
difference, its 95 % t-interval, the paired t-test and the Wilcoxon signed-rank test
(fedls.stats.paired_test); pooled rates carry 95 % Wilson intervals. A difference whose
interval contains 0 is reported as inside the noise.

Figures: ``docs/img/analysis_toy.png`` and ``docs/img/analysis_embeddings_violins.png`` are the
instruments' own pictures for the first seed (written when measuring);
``analysis_toy_seeds.png``, ``analysis_robustness.png`` and ``analysis_stages_cosine.png`` are
drawn from the result file (written with --write-docs). Usage:

    nice -n 10 .venv/bin/python scripts/study_analysis.py --write-docs          # measure (≈ 30 min on 2 busy cores)
    .venv/bin/python scripts/study_analysis.py --render --write-docs            # blocks and figures from the file only
    .venv/bin/python scripts/study_analysis.py --quick --out /tmp/analysis.json # a small smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _docblocks as blocks

from fedls.stats import PairedTest, describe, paired_test, wilson_interval

SCRIPT = "study_analysis.py"
DOC = blocks.ROOT / "docs" / "analysis.md"
DEFAULT_OUT = blocks.RESULTS / "analysis.json"
IMG = blocks.ROOT / "docs" / "img"
KEYS = ("toy", "runs", "embeddings", "robustness", "stages")
ALPHAS = (0.0, 0.1, -0.05)  # the federated runs; α = 0 is the baseline of every comparison
TOY_ALPHAS = (0.0, 0.05, -0.05)
TOY_CENTRE_ALPHAS = (0.0, 0.05)
# Struppek et al. (2024), Fig. 1: attack steps to 95 % target confidence for α = 0 / 0.05 / −0.05.
PAPER_TOY_STEPS = {0.0: 763, 0.05: 3113, -0.05: 53}
# Directions the paper reports (α minus α = 0); the blocks say whether the data agree.
PAPER = {
    "toy_steps": {0.05: ("higher", "Fig. 1"), -0.05: ("lower", "Fig. 1")},
    "toy_distance": {0.05: ("lower", "Fig. 1"), -0.05: ("higher", "Fig. 1")},
    "toy_fixed": {0.05: ("lower", "Fig. 8"), -0.05: ("higher", "Fig. 8")},
    "inter_over_intra": {0.1: ("higher", "Fig. 5b")},
    "nn_other": {-0.05: ("higher", "Fig. 5c")},
    "robust": {0.1: ("higher", "Appx. C.8, Tab. 11"), -0.05: ("higher", "Appx. C.8, Tab. 11")},
    "sampling": {-0.05: ("lower", "Fig. 6a, Tab. 5")},
    "cosine": {-0.05: ("lower", "Fig. 6b")},
    "selection": {-0.05: ("lower", "Tab. 7")},
}
ATTACK_NAMES = {
    "clean": "clean",
    "fgsm": "FGSM",
    "pgd10-small-step": "PGD-10, step ε/10",
    "pgd10-large-step": "PGD-10, step ε/2",
    "pgd10-restarts5": "PGD-10, step ε/10, 5 restarts",
    "pgd10-margin": "PGD-10, step ε/10, margin loss",
    "pgd20-margin-large-restarts3": "PGD-20, margin loss, step ε/4, 3 restarts",
    "transfer-pgd20": "transfer: margin PGD-20 (step ε/4) on the α = 0 model",
}
SHORT_NAMES = {
    "fgsm": "FGSM", "pgd10-small-step": "PGD-10\nstep ε/10", "pgd10-large-step": "PGD-10\nstep ε/2",
    "pgd10-restarts5": "PGD-10, ε/10\n5 restarts", "pgd10-margin": "PGD-10, ε/10\nmargin loss",
    "pgd20-margin-large-restarts3": "PGD-20, ε/4\nmargin, 3 restarts", "transfer-pgd20": "transfer from\nthe α = 0 model",
}
SMALL_STEP, STRONG, TRANSFER = "pgd10-small-step", "pgd20-margin-large-restarts3", "transfer-pgd20"
Row = dict[str, Any]


# --------------------------------------------------------------------------- measuring


def run_name(alpha: float, seed: int) -> str:
    return f"digits-a{alpha:g}-s{seed}"


def fedls(args: Sequence[str], threads: int) -> None:
    """Run ``fedls ARGS`` (the virtual environment's entry point) with ``threads`` torch threads."""
    exe = Path(sys.executable).with_name("fedls")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "COLUMNS": "160"}
    started = time.perf_counter()
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=blocks.ROOT)
    if done.returncode != 0:
        raise SystemExit(f"fedls {' '.join(args)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    print(f"fedls {args[0]}: {time.perf_counter() - started:.0f} s", flush=True)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def toy_rows(folder: Path) -> list[Row]:
    return [{"alpha": float(r["alpha"]), "seed": int(r["seed"]), "steps": int(r["steps"]), "reached": r["reached"] == "True",
             "distance": float(r["distance"]), "final_confidence": float(r["final_confidence"]),
             "fixed_steps_distance": float(r["fixed_steps_distance"]), "train_accuracy": float(r["train_accuracy"])}
            for r in read_csv(folder / "toy_runs.csv")]


def measure_toy(tmp: Path, num_seeds: int, threads: int, figures: Path) -> dict[str, Any]:
    from fedls.analysis.toy import DEFAULT_CENTERS, ToyConfig

    default = tmp / "toy"
    fedls(["toy", "--num-seeds", str(num_seeds), "--out", str(default)], threads)
    centre = ToyConfig().centers[ToyConfig().source_class]
    assert centre == DEFAULT_CENTERS[1]
    start = f"{centre[0]:g},{centre[1]:g}"
    centred = tmp / "toy-centre"
    fedls(["toy", *[f"-a{a:g}" for a in TOY_CENTRE_ALPHAS], "--num-seeds", str(num_seeds), f"--start={start}",
           "--out", str(centred)], threads)
    shutil.copyfile(default / "toy.png", figures / "analysis_toy.png")
    config = json.loads((default / "toy.json").read_text(encoding="utf-8"))
    return {"config": config["config"], "geometry": config["geometry"], "rows": toy_rows(default),
            "centre": {"start": list(centre), "config": json.loads((centred / "toy.json").read_text())["config"],
                       "rows": toy_rows(centred)}}


def train_runs(runs_dir: Path, seeds: Sequence[int], clients: int, rounds: int) -> list[Row]:
    from fedls.config import RunConfig
    from fedls.federation.simulation import simulate

    rows = []
    for seed in seeds:
        for alpha in ALPHAS:
            config = RunConfig(clients=clients, rounds=rounds, alpha=alpha, warmup_rounds=2, ramp_rounds=2, attacks="none",
                               device="cpu", seed=seed, run_dir=str(runs_dir), name=run_name(alpha, seed))
            started = time.perf_counter()
            result = simulate(config)
            final = result.summary["final"]
            rows.append({"seed": seed, "alpha": alpha, "name": config.name, "status": result.summary["status"],
                         "rounds": result.summary["rounds_completed"], "test_accuracy": final["global/accuracy"],
                         "mean_logit_norm": final["global/mean_logit_norm"], "train_alpha": final["train/alpha"]})
            print(f"{config.name}: {time.perf_counter() - started:.0f} s, accuracy {final['global/accuracy']:.3f}", flush=True)
    return rows


def measure_instruments(runs_dir: Path, tmp: Path, seeds: Sequence[int], threads: int, figures: Path,
                        robustness: dict[str, Any], stages: dict[str, Any]) -> dict[str, Any]:
    from fedls.analysis.runs import open_trained_run

    emb_rows: list[Row] = []
    rob_rows: list[Row] = []
    stage_rows: list[Row] = []
    for i, seed in enumerate(seeds):
        paths = {a: runs_dir / run_name(a, seed) for a in ALPHAS}
        test_images = len(open_trained_run(paths[0.0]).splits.test)
        # embeddings: one command for the three models; t-SNE only where its picture is kept
        out = tmp / f"embeddings-s{seed}"
        fedls(["embeddings", *map(str, paths.values()), *([] if i == 0 else ["--no-tsne"]), "--out", str(out)], threads)
        summary = json.loads((out / "embeddings.json").read_text(encoding="utf-8"))
        for entry in summary.values():
            emb_rows.append({"seed": seed, "alpha": entry["alpha"], "samples": entry["samples"], "classes": entry["classes"],
                             **{k: entry[k]["mean"] for k in ("intra", "inter", "nn_intra", "nn_inter")},
                             "inter_over_intra": entry["inter_over_intra"],
                             "nn_other_class_fraction": entry["nn_other_class_fraction"],
                             "mean_feature_norm": entry["mean_feature_norm"]})
        if i == 0:
            shutil.copyfile(out / "embeddings_violins.png", figures / "analysis_embeddings_violins.png")
        # robustness: every model, the α = 0 run of the same seed as transfer source
        for alpha, path in paths.items():
            out = tmp / f"robustness-{path.name}"
            fedls(["robustness", str(path), "--reference", str(paths[0.0]), "--epsilon", f"{robustness['epsilon']:g}",
                   "--test-samples", str(robustness["test_samples"]), "--out", str(out)], threads)
            data = json.loads((out / "robustness.json").read_text(encoding="utf-8"))
            rob_rows.append({"seed": seed, "alpha": alpha, "clean_accuracy": data["clean_accuracy"],
                             "samples": min(robustness["test_samples"], test_images), "transfer_white_box": alpha == 0.0,
                             "results": [{k: r[k] for k in ("attack", "mode", "accuracy", "success")} for r in data["results"]]})
        # stages: the three models, α = 0 (baseline) first
        out = tmp / f"stages-s{seed}"
        fedls(["stages", *map(str, paths.values()), "--attack-steps", str(stages["attack_steps"]),
               "--pool-size", str(stages["pool_size"]), "--out", str(out)], threads)
        data = json.loads((out / "stages.json").read_text(encoding="utf-8"))
        alpha_of = {r["optimisation_model"]: r["alpha"] for r in data["optimisation"]}
        curves: dict[str, list[float]] = {}
        for r in read_csv(out / "stages_cosine.csv"):
            curves.setdefault(f"{alpha_of[r['model']]:g}", []).append(float(r["mean"]))
        stage_rows.append({
            "seed": seed,
            "sampling": [{k: r[k] for k in ("alpha", "eval_acc1", "eval_confidence", "target_confidence")}
                         for r in data["sampling"]],
            "optimisation": [{k: r[k] for k in ("alpha", "eval_acc1", "eval_confidence", "grad_cosine_mean")}
                             for r in data["optimisation"]],
            "selection": [{"optimisation_alpha": alpha_of[r["optimisation_model"]], "selection_alpha": r["alpha"],
                           "eval_acc1": r["eval_acc1"], "eval_confidence": r["eval_confidence"]} for r in data["selection"]],
            "cosine_curves": curves,
        })
    return {"embeddings": emb_rows, "robustness": rob_rows, "stages": stage_rows}


def measure(args: argparse.Namespace, figures: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    from fedls.attacks.model.config import PPAOptions

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    seeds = parse_seeds(args.seeds)
    robustness = {"epsilon": 0.25, "test_samples": 200}
    ppa = PPAOptions()
    stages = {"attack_steps": 30, "pool_size": 500, "candidates_per_class": ppa.candidates_per_class,
              "samples_per_class": ppa.samples_per_class}
    figures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedls-study-analysis-") as name:
        tmp = Path(name)
        runs_dir = args.keep_runs if args.keep_runs is not None else tmp / "runs"
        toy = measure_toy(tmp, args.toy_seeds, args.threads, figures)
        runs = train_runs(runs_dir, seeds, args.clients, args.rounds)
        classes = len(open_classes(runs_dir / run_name(0.0, seeds[0])))
        stages["classes"] = classes
        instruments = measure_instruments(runs_dir, tmp, seeds, args.threads, figures, robustness, stages)
    extra = {"seeds": seeds, "toy_seeds": args.toy_seeds, "clients": args.clients, "rounds": args.rounds,
             "warmup_rounds": 2, "ramp_rounds": 2, "torch_threads": args.threads, "robustness": robustness, "stages": stages}
    return extra, {"toy": toy, "runs": runs, **instruments}


def open_classes(path: Path) -> list[int]:
    from fedls.analysis.runs import open_trained_run

    return list(range(open_trained_run(path).splits.num_classes))


def parse_seeds(text: str) -> list[int]:
    """``0-9`` or ``0,1,2``."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",")]


# --------------------------------------------------------------------------- rendering


def num(value: float) -> str:
    """``value`` with ``:g`` and a typographic minus."""
    return f"{value:g}".replace("-", "−")


def a_text(alpha: float) -> str:
    return f"α = {num(alpha)}"


def signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def seeds_text(seeds: Sequence[int]) -> str:
    consecutive = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    shown = f"{seeds[0]}–{seeds[-1]}" if consecutive and len(seeds) > 2 else ", ".join(map(str, seeds))
    return f"seeds {shown} ({len(seeds)})"


def p_text(p: float | None) -> str:
    """Two significant digits, three where two would round across 0.05."""
    if p is None:
        return "n/a"
    return f"{p:.3g}" if f"{p:.2g}" == "0.05" else f"{p:.2g}"


def mean_sd(values: Sequence[float], digits: int, scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    return f"{statistics.fmean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def direction(test: PairedTest) -> str | None:
    """``higher`` / ``lower`` when the 95 % t-interval of the paired difference excludes 0, else None."""
    if test.ci_low is None or test.ci_high is None:
        return None
    if test.ci_low > 0:
        return "higher"
    if test.ci_high < 0:
        return "lower"
    return None


def diff_cell(test: PairedTest, digits: int, scale: float = 1.0) -> str:
    """``+1.2 [+0.3, +2.1], p 0.01`` (mean paired difference, 95 % t-interval, paired t-test)."""
    if test.ci_low is None or test.ci_high is None:
        return f"{signed(test.mean_diff * scale, digits)} (n/a)"
    return (f"{signed(test.mean_diff * scale, digits)} [{signed(test.ci_low * scale, digits)}, "
            f"{signed(test.ci_high * scale, digits)}], p {p_text(test.p_t)}")


def test_text(test: PairedTest, digits: int, scale: float = 1.0, unit: str = "") -> str:
    """``+1.2 points (95 % t-interval [+0.3, +2.1] points; paired t-test p = 0.01, Wilcoxon p = 0.02; n = 10 seeds)``."""
    text = f"{signed(test.mean_diff * scale, digits)}{unit}"
    if test.ci_low is None or test.ci_high is None:
        return text + f" (n = {test.n} seeds; no interval)"
    return text + (f" (95 % t-interval [{signed(test.ci_low * scale, digits)}, {signed(test.ci_high * scale, digits)}]{unit}; "
                   f"paired t-test p = {p_text(test.p_t)}, Wilcoxon p = {p_text(test.p_wilcoxon)}; n = {test.n} seeds)")


def verdict(test: PairedTest, higher: str, lower: str) -> str:
    """What the interval says: ``higher`` / ``lower`` when it excludes 0, else inside the noise; and whether the
    Wilcoxon signed-rank test, at the same 0.05 level, disagrees with the t-test."""
    if test.sd_diff == 0 and test.mean_diff == 0:
        return "no difference: the same value in every seed"
    found = direction(test)
    return "inside the noise (the interval contains 0)" if found is None else higher if found == "higher" else lower


def wilcoxon_note(test: PairedTest) -> str:
    """``; the Wilcoxon test …`` when the signed-rank test, at the same 0.05 level, disagrees with the t-test."""
    if test.p_t is None or test.p_wilcoxon is None or (test.p_t < 0.05) == (test.p_wilcoxon < 0.05):
        return ""
    return f"; the Wilcoxon test {'does not confirm it' if test.p_t < 0.05 else 'alone would call it a difference'} at 0.05"


def reading(test: PairedTest, what: str, alpha: float, base: float, digits: int, scale: float = 1.0,
            paper: tuple[str, str] | None = None, unit: str = "") -> str:
    """One sentence: the paired difference, its interval and tests, and the verdict (against the paper's direction)."""
    text = f"{what}, {a_text(alpha)} minus {a_text(base)}: {test_text(test, digits, scale, unit)} — "
    found = direction(test)
    text += verdict(test, f"{a_text(alpha)} is higher", f"{a_text(alpha)} is lower")
    if paper is not None:
        if test.sd_diff == 0 and test.mean_diff == 0:
            text += f"; the paper's direction ({paper[0]}, {paper[1]}) does not appear here"
        elif found is None:
            text += f"; the paper's direction ({paper[0]}, {paper[1]}) is neither confirmed nor contradicted here"
        elif found == paper[0]:
            text += f", as the paper reports ({paper[1]})"
        else:
            text += f", opposite to the paper ({paper[1]}: {paper[0]})"
    return text + wilcoxon_note(test) + "."


def paired(rows: Sequence[Row], key: str | Callable[[Row], float], alpha: float, base: float = 0.0
           ) -> tuple[PairedTest, list[float], list[float]]:
    """``key`` of ``alpha`` vs ``base`` paired by seed (rows carry ``seed`` and ``alpha``)."""
    get = key if callable(key) else (lambda r: float(r[key]))
    by = {(r["seed"], r["alpha"]): get(r) for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    values, baseline = [by[(s, alpha)] for s in seeds], [by[(s, base)] for s in seeds]
    return paired_test(values, baseline), values, baseline


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs ``b`` and ``c`` (binomial, p = 1/2)."""
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5).pvalue)


def stamp(results: dict[str, Any], out: Path) -> str:
    command = f".venv/bin/python scripts/{SCRIPT} --render --write-docs"
    if out.resolve() != DEFAULT_OUT.resolve():
        command += f" --out {blocks.shown_path(out)}"
    return blocks.stamp(results["meta"], out, command)


def render_toy(results: dict[str, Any]) -> str:
    toy = results["toy"]
    rows, config = toy["rows"], toy["config"]
    seeds = sorted({r["seed"] for r in rows})
    fixed = config["fixed_steps"]
    lines = [
        f"`fedls toy --num-seeds {len(seeds)}` (default geometry and start, {seeds_text(seeds)}; one model per seed and α, "
        f"the models of one seed share data and initial weights):",
        "",
        f"| α | steps to 95 %: median (range) | reached 95 % | distance to nearest orange point at 95 %: mean ± sd "
        f"| after {fixed} steps without stopping: mean ± sd (median) |",
        "|---|---|---|---|---|",
    ]
    for alpha in TOY_ALPHAS:
        sub = [r for r in rows if r["alpha"] == alpha]
        steps = [r["steps"] for r in sub]
        fixed_d = [r["fixed_steps_distance"] for r in sub]
        reached = sum(r["reached"] for r in sub)
        lines.append(
            f"| {num(alpha)} | {statistics.median(steps):g} ({min(steps)}–{max(steps)}) | {reached}/{len(sub)} "
            f"| {mean_sd([r['distance'] for r in sub], 2)} | {mean_sd(fixed_d, 2)} ({statistics.median(fixed_d):.2f}) |"
        )
    by = {(r["seed"], r["alpha"]): r for r in rows}
    ordered = sum(by[(s, -0.05)]["steps"] < by[(s, 0.0)]["steps"] < by[(s, 0.05)]["steps"] for s in seeds)
    closer = sum(by[(s, 0.05)]["distance"] < by[(s, 0.0)]["distance"] for s in seeds)
    lines += ["", f"Paired by seed ({len(seeds)} seeds; p-values per comparison, not corrected for multiple comparisons):", ""]
    lines.append(f"* Step ordering −0.05 < 0 < 0.05 holds in {ordered} of {len(seeds)} seeds.")
    for key, what, digits in (("steps", "Steps to 95 %", 1), ("distance", "Distance at 95 %", 2),
                              ("fixed_steps_distance", f"Distance after {fixed} steps", 2)):
        paper_key = {"steps": "toy_steps", "distance": "toy_distance", "fixed_steps_distance": "toy_fixed"}[key]
        for alpha in (0.05, -0.05):
            test, _, _ = paired(rows, key, alpha)
            lines.append(f"* {reading(test, what, alpha, 0.0, digits, paper=PAPER[paper_key][alpha])}")
            if key == "distance" and alpha == 0.05:
                lines[-1] = lines[-1][:-1] + f"; {a_text(0.05)} closer in {closer} of {len(seeds)} seeds."
    centre = toy["centre"]
    c_rows = centre["rows"]
    c_seeds = sorted({r["seed"] for r in c_rows})
    start = ", ".join(num(v) for v in centre["start"])
    lines += ["", f"From the green centre itself (`--start={','.join(f'{v:g}' for v in centre['start'])}`, "
                  f"{seeds_text(c_seeds)}), the attack reaches 95 % target confidence within "
                  f"{centre['config']['max_attack_steps']} steps in:", ""]
    for alpha in TOY_CENTRE_ALPHAS:
        sub = [r for r in c_rows if r["alpha"] == alpha]
        k = sum(r["reached"] for r in sub)
        lo, hi = wilson_interval(k, len(sub))
        lines.append(f"* {a_text(alpha)}: {k} of {len(sub)} seeds (95 % Wilson interval {lo:.0%}–{hi:.0%}).")
    c_by = {(r["seed"], r["alpha"]): r["reached"] for r in c_rows}
    only_0 = sum(c_by[(s, 0.0)] and not c_by[(s, 0.05)] for s in c_seeds)
    only_5 = sum(c_by[(s, 0.05)] and not c_by[(s, 0.0)] for s in c_seeds)
    lines.append(f"* Paired by seed: only {a_text(0)} reaches 95 % in {only_0} seeds, only {a_text(0.05)} in {only_5}; "
                 + ("no discordant seed to test." if only_0 + only_5 == 0 else
                    f"exact McNemar (binomial) test p = {p_text(mcnemar_exact(only_0, only_5))} — "
                    + ("a difference at 0.05." if mcnemar_exact(only_0, only_5) < 0.05 else "inside the noise at 0.05.")))
    medians = " / ".join(f"{statistics.median(r['steps'] for r in rows if r['alpha'] == a):g}" for a in TOY_ALPHAS)
    paper = " / ".join(str(PAPER_TOY_STEPS[a]) for a in TOY_ALPHAS)
    lines += ["", f"Start point of the default runs: ({', '.join(num(v) for v in toy['geometry']['start_point'])}) "
                  f"(the centre run: ({start})). Median steps here for α = 0 / 0.05 / −0.05: {medians}; "
                  f"Struppek et al. (2024), Fig. 1: {paper}."]
    return "\n".join(lines)


def run_stats(results: dict[str, Any], alpha: float, key: str) -> list[float]:
    return [float(r[key]) for r in results["runs"] if r["alpha"] == alpha]


def render_runs(results: dict[str, Any]) -> str:
    meta, runs = results["meta"], results["runs"]
    seeds = meta["seeds"]
    statuses = sorted({r["status"] for r in runs})
    lines = [
        f"Runs: digits, `cnn`, {meta['clients']} clients × {meta['rounds']} rounds of FedAvg, client gradient clipping 1.0 "
        f"(default), negative α after {meta['warmup_rounds']} warm-up and {meta['ramp_rounds']} ramp rounds; one run per α and "
        f"seed, {seeds_text(seeds)}, made with `simulate(RunConfig(clients={meta['clients']}, rounds={meta['rounds']}, "
        f"alpha=A, warmup_rounds={meta['warmup_rounds']}, ramp_rounds={meta['ramp_rounds']}, attacks=\"none\", seed=S, "
        f"name=\"digits-aA-sS\"))`. Run status: {', '.join(statuses)}.",
        "",
        "| α | test accuracy: mean ± sd (range) | mean logit norm: median (range) | α in force in the last round |",
        "|---|---|---|---|",
    ]
    for alpha in ALPHAS:
        acc = run_stats(results, alpha, "test_accuracy")
        norm = run_stats(results, alpha, "mean_logit_norm")
        in_force = sorted({num(v) for v in run_stats(results, alpha, "train_alpha")})
        lines.append(f"| {num(alpha)} | {mean_sd(acc, 3)} ({min(acc):.3f}–{max(acc):.3f}) "
                     f"| {statistics.median(norm):.1f} ({min(norm):.1f}–{max(norm):.1f}) | {', '.join(in_force)} |")
    test = paired_test(run_stats(results, -0.05, "mean_logit_norm"), run_stats(results, 0.0, "mean_logit_norm"))
    ratio = [n / b for n, b in zip(run_stats(results, -0.05, "mean_logit_norm"), run_stats(results, 0.0, "mean_logit_norm"),
                                   strict=True)]
    lines += ["", reading(test, "Mean logit norm", -0.05, 0.0, 1) + f" Ratio −0.05 / 0 per seed: "
              f"{min(ratio):.1f}–{max(ratio):.1f}×."]
    return "\n".join(lines)


def render_embeddings(results: dict[str, Any]) -> str:
    rows = results["embeddings"]
    seeds = sorted({r["seed"] for r in rows})
    samples = sorted({r["samples"] for r in rows})
    classes = sorted({r["classes"] for r in rows})
    lines = [
        f"`fedls embeddings` on the three runs of each seed ({seeds_text(seeds)}; {'/'.join(map(str, samples))} training "
        f"samples of {'/'.join(map(str, classes))} classes per model). Distances are max-scaled, means over "
        "seeds; the feature norm is the mean L2 norm of the unscaled penultimate features:",
        "",
        "| model | intra | inter | NN intra | NN inter | inter/intra: mean ± sd | NN of another class (pooled, 95 % Wilson) "
        "| feature norm (unscaled), median (range) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for alpha in ALPHAS:
        sub = [r for r in rows if r["alpha"] == alpha]
        k = sum(round(r["nn_other_class_fraction"] * r["samples"]) for r in sub)
        n = sum(r["samples"] for r in sub)
        lo, hi = wilson_interval(k, n)
        cells = " | ".join(f"{statistics.fmean(r[key] for r in sub):.3f}" for key in ("intra", "inter", "nn_intra", "nn_inter"))
        norms = [r["mean_feature_norm"] for r in sub]
        lines.append(f"| {a_text(alpha)} | {cells} | {mean_sd([r['inter_over_intra'] for r in sub], 2)} "
                     f"| {k}/{n} = {k / n:.1%} ({lo:.1%}–{hi:.1%}) "
                     f"| {statistics.median(norms):.1f} ({min(norms):.1f}–{max(norms):.1f}) |")
    lines += ["", "Paired by seed (p-values per comparison, not corrected for multiple comparisons):", ""]
    for alpha in (0.1, -0.05):
        test, _, _ = paired(rows, "inter_over_intra", alpha)
        lines.append(f"* {reading(test, 'inter/intra', alpha, 0.0, 2, paper=PAPER['inter_over_intra'].get(alpha))}")
    for alpha in (0.1, -0.05):
        test, _, _ = paired(rows, "nn_other_class_fraction", alpha)
        text = reading(test, "Share of nearest neighbours of another class", alpha, 0.0, 1, 100, unit=" points",
                       paper=PAPER["nn_other"].get(alpha))
        lines.append(f"* {text}")
    return "\n".join(lines)


def robust_value(row: Row, attack: str) -> float:
    if attack == "clean":
        return float(row["clean_accuracy"])
    return next(float(r["accuracy"]) for r in row["results"] if r["attack"] == attack and r["mode"] == "untargeted")


def attacks_of(rows: Sequence[Row]) -> list[str]:
    return ["clean", *dict.fromkeys(r["attack"] for r in rows[0]["results"])]


def render_robustness(results: dict[str, Any]) -> str:
    rows, meta = results["robustness"], results["meta"]
    seeds = sorted({r["seed"] for r in rows})
    samples = sorted({r["samples"] for r in rows})
    eps = meta["robustness"]["epsilon"]
    lines = [
        f"`fedls robustness RUN --reference <the α = 0 run of the same seed>` on every run ({seeds_text(seeds)}; "
        f"ε = {eps:g} in the [−1, 1] image range; the first {'/'.join(map(str, samples))} test digits). Untargeted robust "
        "accuracy in %, mean ± sd over seeds; the differences are paired by seed (mean, 95 % t-interval, paired t-test p). "
        "For the α = 0 model the transfer source is the model itself, so its transfer row is a white-box attack.",
        "",
        "| attack | α = 0 | α = 0.1 | α = −0.05 | α = 0.1 minus α = 0 | α = −0.05 minus α = 0 |",
        "|---|---|---|---|---|---|",
    ]
    for attack in attacks_of(rows):
        cells = []
        for alpha in ALPHAS:
            cell = mean_sd([robust_value(r, attack) for r in rows if r["alpha"] == alpha], 1, 100)
            cells.append(cell + (" (white-box)" if attack == TRANSFER and alpha == 0.0 else ""))
        def value(row: Row, attack: str = attack) -> float:
            return robust_value(row, attack)

        diffs = ["—" if attack == TRANSFER else diff_cell(paired(rows, value, alpha)[0], 1, 100) for alpha in (0.1, -0.05)]
        lines.append(f"| {ATTACK_NAMES.get(attack, attack)} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    half = [max(abs(v - robust_value(r, a)) for v in wilson_interval(round(robust_value(r, a) * r["samples"]), r["samples"]))
            for r in rows for a in attacks_of(rows)]
    lines += ["", f"One model and {'/'.join(map(str, samples))} digits per cell and seed: a single run's rate carries a 95 % "
                  f"Wilson half-width of up to {max(half) * 100:.1f} points. Readings, paired by seed (p-values per "
                  "comparison, uncorrected):", ""]
    for alpha in (0.1, -0.05):
        small, _, _ = paired(rows, lambda r: robust_value(r, SMALL_STEP), alpha)
        strong, _, _ = paired(rows, lambda r: robust_value(r, STRONG), alpha)
        for test, what in ((small, "Under small-step PGD (Fu et al. 2020)"), (strong, "Under the strong margin PGD-20")):
            lines.append(f"* {reading(test, what, alpha, 0.0, 1, 100, unit=' points', paper=PAPER['robust'][alpha])}")
        by = {(r["seed"], r["alpha"]): r for r in rows}
        gap_small = [robust_value(by[(s, alpha)], SMALL_STEP) - robust_value(by[(s, 0.0)], SMALL_STEP) for s in seeds]
        gap_strong = [robust_value(by[(s, alpha)], STRONG) - robust_value(by[(s, 0.0)], STRONG) for s in seeds]
        shrink = paired_test(gap_strong, gap_small)
        lines.append(f"* Lead of {a_text(alpha)} over {a_text(0)} under the strong attack minus its lead under small-step PGD: "
                     f"{test_text(shrink, 1, 100, ' points')} — "
                     f"{verdict(shrink, 'the lead is larger under it', 'the lead is smaller under it')}{wilcoxon_note(shrink)}.")
        transfer = paired_test([robust_value(by[(s, alpha)], TRANSFER) for s in seeds],
                               [robust_value(by[(s, alpha)], STRONG) for s in seeds])
        lines.append(f"* {a_text(alpha)} model, robust accuracy under transfer minus under the strong white-box attack: "
                     f"{test_text(transfer, 1, 100, ' points')} — "
                     f"{verdict(transfer, 'the transfer attack is weaker', 'the transfer attack is stronger')}"
                     f"{wilcoxon_note(transfer)}.")
    return "\n".join(lines)


def stage_value(row: Row, stage: str, alpha: float, key: str = "eval_acc1") -> float:
    if stage == "selection":
        return next(float(r[key]) for r in row["selection"] if r["optimisation_alpha"] == 0.0 and r["selection_alpha"] == alpha)
    return next(float(r[key]) for r in row[stage] if r["alpha"] == alpha)


def render_stages(results: dict[str, Any]) -> str:
    rows, meta = results["stages"], results["meta"]
    st = meta["stages"]
    seeds = [r["seed"] for r in rows]
    n_pick = st["candidates_per_class"] * st["classes"]
    n_sel = st["samples_per_class"] * st["classes"]
    measures = [("sampling", "eval_acc1", "Sampling: evaluation Acc@1 of each model's picks", n_pick, "sampling"),
                ("optimisation", "grad_cosine_mean", "Optimisation: mean cosine of consecutive gradients", None, "cosine"),
                ("optimisation", "eval_acc1", "Optimisation: evaluation Acc@1 of the optimised candidates", n_pick, None),
                ("selection", "eval_acc1", f"Selection: Acc@1 of {a_text(0)}'s optimised candidates as each model "
                                           "re-selects them", n_sel, "selection")]
    lines = [
        f"`fedls stages <α = 0 run> <α = 0.1 run> <α = −0.05 run> --attack-steps {st['attack_steps']} --pool-size "
        f"{st['pool_size']}` for each seed ({seeds_text(seeds)}; all {st['classes']} private classes). Means over seeds; "
        "the differences are paired by seed (mean, 95 % t-interval, paired t-test p).",
        "",
        "| stage and measure | images per cell | α = 0 | α = 0.1 | α = −0.05 | α = 0.1 minus α = 0 | α = −0.05 minus α = 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    as_rows = {(stage, key): [{"seed": r["seed"], "alpha": a, "v": stage_value(r, stage, a, key)} for r in rows for a in ALPHAS]
               for stage, key, *_ in measures}
    for stage, key, label, n, _ in measures:
        data = as_rows[(stage, key)]
        cells = [mean_sd([d["v"] for d in data if d["alpha"] == a], 3) for a in ALPHAS]
        diffs = [diff_cell(paired(data, "v", a)[0], 3) for a in (0.1, -0.05)]
        lines.append(f"| {label} | {n if n is not None else '—'} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    lines += ["", f"Each Acc@1 is a share of {n_pick} (or {n_sel}) images per seed, so one image moves it by "
                  f"{1 / n_pick:.2f} (or {1 / n_sel:.2f}). Readings for {a_text(-0.05)} against the paper's directions "
                  "(p-values per comparison, uncorrected):", ""]
    for stage, key, label, _, paper_key in measures:
        if paper_key is None:
            continue
        test, _, _ = paired(as_rows[(stage, key)], "v", -0.05)
        lines.append(f"* {reading(test, label, -0.05, 0.0, 3, paper=PAPER[paper_key][-0.05])}")
    return "\n".join(lines)


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "toy": render_toy, "runs": render_runs, "embeddings": render_embeddings, "robustness": render_robustness,
    "stages": render_stages,
}


def render(key: str, results: dict[str, Any], out: Path) -> str:
    """Block ``key`` of docs/analysis.md from the result file's data alone."""
    return "\n\n".join([RENDER[key](results), stamp(results, out)])


# --------------------------------------------------------------------------- figures from the result file


def save_figures(results: dict[str, Any], figures: Path) -> list[Path]:
    """The per-seed pictures drawn from the result file (no model is loaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colours = {0.0: "tab:blue", 0.1: "tab:orange", -0.05: "tab:green", 0.05: "tab:orange"}
    meta = results["meta"]

    # toy: every seed's value per α, a grey line per seed (the comparisons are paired)
    toy = results["toy"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    keys = [("steps", "attack steps to 95 % confidence", True), ("distance", "distance to orange data at 95 %", False),
            ("fixed_steps_distance", f"distance after {toy['config']['fixed_steps']} steps", False)]
    seeds = sorted({r["seed"] for r in toy["rows"]})
    by = {(r["seed"], r["alpha"]): r for r in toy["rows"]}
    for ax, (key, label, log) in zip(axes, keys, strict=True):
        for s in seeds:
            ax.plot(range(len(TOY_ALPHAS)), [by[(s, a)][key] for a in TOY_ALPHAS], color="0.75", linewidth=0.8, zorder=1)
        for i, a in enumerate(TOY_ALPHAS):
            ax.scatter([i] * len(seeds), [by[(s, a)][key] for s in seeds], color=colours[a], s=18, zorder=2)
        ax.set_xticks(range(len(TOY_ALPHAS)), [a_text(a) for a in TOY_ALPHAS])
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
    fig.suptitle(f"fedls toy, {len(seeds)} seeds (grey line = one seed)", fontsize=10)
    fig.tight_layout()
    written.append(figures / "analysis_toy_seeds.png")
    fig.savefig(written[-1], dpi=100, metadata={"Software": None})
    plt.close(fig)

    # robustness: mean over seeds with the 95 % t-interval, one bar per α
    rows = results["robustness"]
    attacks = attacks_of(rows)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.27
    for j, alpha in enumerate(ALPHAS):
        means, errs = [], []
        for attack in attacks:
            d = describe([robust_value(r, attack) * 100 for r in rows if r["alpha"] == alpha])
            means.append(d.mean)
            errs.append(0.0 if d.ci_high is None else d.ci_high - d.mean)
        ax.bar([i + (j - 1) * width for i in range(len(attacks))], means, width, yerr=errs, capsize=2,
               color=colours[alpha], label=a_text(alpha))
    ax.set_xticks(range(len(attacks)), [SHORT_NAMES.get(a, a) for a in attacks], fontsize=8)
    ax.set_ylabel("untargeted robust accuracy (%)")
    ax.set_ylim(0, 105)
    n_seeds = len({r["seed"] for r in rows})
    ax.set_title(f"fedls robustness, ε = {meta['robustness']['epsilon']:g} ([−1, 1] images): mean over {n_seeds} seeds, "
                 "95 % t-interval", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    written.append(figures / "analysis_robustness.png")
    fig.savefig(written[-1], dpi=100, metadata={"Software": None})
    plt.close(fig)

    # stages: per-step gradient cosine, mean over seeds with the 95 % t-interval
    stage_rows = results["stages"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for alpha in ALPHAS:
        curves = [r["cosine_curves"][f"{alpha:g}"] for r in stage_rows]
        steps = list(range(2, len(curves[0]) + 2))
        stats = [describe([c[t] for c in curves]) for t in range(len(curves[0]))]
        mean = [d.mean for d in stats]
        ax.plot(steps, mean, color=colours[alpha], label=a_text(alpha))
        if len(curves) > 1:
            low = [d.mean if d.ci_low is None else d.ci_low for d in stats]
            high = [d.mean if d.ci_high is None else d.ci_high for d in stats]
            ax.fill_between(steps, low, high, color=colours[alpha], alpha=0.2)
    ax.set_xlabel("optimisation step t")
    ax.set_ylabel(r"$\cos(\nabla L_t, \nabla L_{t-1})$, mean over images")
    ax.set_title(f"fedls stages, optimisation stage: mean over {len(stage_rows)} seeds, 95 % t-interval", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", ncol=3)
    fig.tight_layout()
    written.append(figures / "analysis_stages_cosine.png")
    fig.savefig(written[-1], dpi=100, metadata={"Software": None})
    plt.close(fig)
    return written


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-9", help="seeds of the federated runs: 0-9 or 0,1,2 [default: %(default)s]")
    parser.add_argument("--toy-seeds", type=int, default=10, help="fedls toy --num-seeds [default: %(default)s]")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every step [default: %(default)s]")
    parser.add_argument("--keep-runs", type=Path, default=None, help="train the runs into this folder and keep them")
    parser.add_argument("--quick", action="store_true", help="a smoke run: seeds 0,1, 3 toy seeds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="[default: %(default)s]")
    parser.add_argument("--figures", type=Path, default=None,
                        help="folder of the figures; with --render, also draw them there "
                             "[default: docs/img with the default --out, else next to --out]")
    parser.add_argument("--render", action="store_true", help="measure nothing: render the blocks (and figures) from --out")
    parser.add_argument("--write-docs", action="store_true", help="replace the blocks in docs/analysis.md and write the figures")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.toy_seeds = "0,1", 3
    figures = args.figures or (IMG if args.out.resolve() == DEFAULT_OUT.resolve() else args.out.parent)
    if not args.render:
        meta = blocks.run_meta(SCRIPT, sys.argv[1:])
        started = time.perf_counter()
        extra, data = measure(args, figures)
        blocks.save_results(args.out, {"meta": {**blocks.finish_meta(meta, time.perf_counter() - started), **extra}, **data})
    results = blocks.load_results(args.out)  # render from the file, exactly as --render would
    for key in KEYS:
        body = render(key, results, args.out)
        print(body, end="\n\n")
        if args.write_docs:
            changed = blocks.write_block(DOC, *blocks.markers(SCRIPT, key), body)
            print(f"{blocks.shown_path(DOC)}: block {key} {'updated' if changed else 'unchanged'}", file=sys.stderr)
    if args.write_docs or not args.render or args.figures is not None:
        for path in save_figures(results, figures):
            print(f"figure: {blocks.shown_path(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
