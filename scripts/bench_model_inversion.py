"""Cost of one model-inversion round at the default budget, and the no-false-positive controls.

One round = what the server's observer does at an attacked round: PPA (sampling, optimisation,
selection) on the global model, the target's private-test accuracy, and the scorer (judge Acc@1
with interval and prior baseline, δ_eval, ξ with the default surrogates). The target is a small
CNN trained centrally on the private digits (0–4, α = 0.1, Adam 1e-3, 15 epochs, seed 0). The
one-time costs — training the prior and the judge — are timed in a fresh cache folder (unless
``--cache-dir`` names one that may hold them) and excluded from the round; a first, untimed
round warms up. Wall and CPU seconds are recorded with the load average around the timed rounds
(the machine may be shared).

``--controls`` also attacks, for every seed of ``--control-seeds``, the targets of
tests/test_instrument_controls.py at the default budget (trained, untrained, shuffled-label and
public-data-only; ξ skipped) and pools their Acc@1 over seeds with a 95 % Wilson interval.

Writes docs/results/model_inversion_cost.json, the attack-vs-real figure (``--figure``) and, with
--write-docs, the generated block of docs/model_inversion.md:

    nice -n 5 .venv/bin/python scripts/bench_model_inversion.py --threads 1 --repeats 5 --controls \\
        --figure docs/img/mi_attack_vs_real.png --write-docs
    .venv/bin/python scripts/bench_model_inversion.py --render --write-docs     # from the file only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _docblocks as blocks
import torch

from fedls.data import dataset_tensors, load_dataset
from fedls.federation.observers.model_inversion import ModelInversion, parse_model_attack, round_title
from fedls.models import build_model
from fedls.smoothing import label_smoothing_loss
from fedls.stats import wilson_interval

SCRIPT = "bench_model_inversion.py"
DOC = blocks.ROOT / "docs" / "model_inversion.md"
DEFAULT_OUT = blocks.RESULTS / "model_inversion_cost.json"
CONTROLS = {
    "trained": "trained on the private digits (α = 0.1)",
    "untrained": "untrained",
    "shuffled_labels": "trained on shuffled private labels",
    "public_data_only": "trained only on the server's public digits 5–9",
}
TARGET_EPOCHS = 15


def train_target(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float, epochs: int, seed: int
) -> torch.nn.Module:
    """Central training with label smoothing α (Adam 1e-3, batch 32)."""
    torch.manual_seed(seed)
    model = build_model("cnn", tuple(images.shape[1:]), num_classes)  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    rng = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(labels), generator=rng).split(32):
            optimizer.zero_grad()
            label_smoothing_loss(model(images[batch]), labels[batch], alpha).backward()
            optimizer.step()
    return model.eval()


def control_targets(inversion: ModelInversion, seed: int) -> dict[str, torch.nn.Module]:
    splits = inversion.splits
    x, y = dataset_tensors(splits.train)
    xp, yp = dataset_tensors(splits.public)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1000 + seed))]
    torch.manual_seed(seed)
    untrained = build_model("cnn", splits.image_shape, splits.num_classes)
    return {
        "trained": train_target(x, y, splits.num_classes, 0.1, TARGET_EPOCHS, seed),
        "untrained": untrained,
        "shuffled_labels": train_target(x, shuffled, splits.num_classes, 0.0, TARGET_EPOCHS, seed),
        "public_data_only": train_target(xp, yp - splits.num_classes, splits.num_classes, 0.0, TARGET_EPOCHS, seed),
    }


def judged_per_class(inversion: ModelInversion, result: Any) -> dict[str, list[int]]:
    """Per attacked class: [images the judge assigns to it, images]."""
    with torch.no_grad():
        predicted = inversion.judge.model(result.images).argmax(-1)
    names = inversion.splits.class_names or [str(c) for c in range(inversion.splits.num_classes)]
    return {names[int(c)]: [int((predicted[result.targets == c] == c).sum()), int((result.targets == c).sum())]
            for c in result.classes}


def measure(args: argparse.Namespace, cache_dir: str) -> dict[str, Any]:
    splits = load_dataset("digits")
    options = parse_model_attack({"cache_dir": cache_dir}, splits.num_classes)
    inversion = ModelInversion(options, splits, "cnn")
    t0 = time.perf_counter()
    _ = inversion.prior
    t1 = time.perf_counter()
    _ = inversion.judge
    t2 = time.perf_counter()
    _ = inversion.prior_quality()
    t3 = time.perf_counter()
    x, y = dataset_tensors(splits.train)
    target = train_target(x, y, splits.num_classes, 0.1, TARGET_EPOCHS, 0)
    inversion.run(target, seed=0)  # warm-up (allocations, first touch of caches); not timed
    wall: list[float] = []
    cpu: list[float] = []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result, metrics = inversion.run(target, seed=0)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    load_after = os.getloadavg()[0]
    if args.figure is not None:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        inversion.figure(result, round_title("digits 0–4, central CNN α = 0.1", metrics)).savefig(args.figure)
    controls: list[dict[str, Any]] = []
    if args.controls:
        for seed in [int(s) for s in args.control_seeds.split(",")]:
            for name, model in control_targets(inversion, seed).items():
                _, m = inversion.run(model, seed=seed, extraction=False)
                controls.append({"seed": seed, "target": name, **{k: m[k] for k in (
                    "target_accuracy", "acc1", "acc1_low", "acc1_high", "num_images", "baseline_acc1", "baseline_num_images",
                    "lift", "chance")}})
                print(json.dumps(controls[-1]), flush=True)
    return {
        "budget": options.ppa.model_dump(include={"pool_size", "candidates_per_class", "samples_per_class", "steps"}),
        "classes": len(result.classes),
        "surrogate_inits": options.evaluation.surrogate_inits,
        "prior": {"steps": options.prior.steps, "public_images": len(splits.public), "seconds": t1 - t0},
        "judge": {"epochs": options.evaluation.epochs, "train_images": len(splits.train), "seconds": t2 - t1,
                  "test_accuracy": inversion.judge.test_accuracy},
        "prior_quality_seconds": t3 - t2,
        "round_wall_seconds": wall,
        "round_cpu_seconds": cpu,
        "load_average_rounds": [round(load_before, 2), round(load_after, 2)],
        "round": {k: metrics[k] for k in ("acc1", "acc1_low", "acc1_high", "num_images", "baseline_acc1", "lift",
                                          "target_accuracy", "attack_seconds")},
        "judged_per_class": judged_per_class(inversion, result),
        "figure": None if args.figure is None else blocks.shown_path(args.figure),
        "controls": controls,
    }


def markdown(results: dict[str, Any], out: Path) -> str:
    meta, r = results["meta"], results["results"]
    wall, cpu = r["round_wall_seconds"], r["round_cpu_seconds"]
    b = r["budget"]
    cache = ("in a fresh cache folder" if meta["fresh_cache"] else "in the cache folder given (a cache hit is a load, "
             "not training)")
    lines = [
        f"One model-inversion round as the observer runs it: PPA at the default budget on {r['classes']} classes (pool "
        f"{b['pool_size']:,}, {b['candidates_per_class']} candidates and {b['samples_per_class']} images per class, "
        f"{b['steps']} steps), the target's accuracy, and the scorer (judge Acc@1, baseline, δ_eval, ξ with "
        f"{r['surrogate_inits']} surrogates); prior and judge cached; target: `cnn` trained centrally on the private "
        f"digits (α = 0.1, seed 0). {meta['torch_threads']} torch thread{'' if meta['torch_threads'] == 1 else 's'}, "
        f"{meta['cpus']} CPUs, "
        f"load average {r['load_average_rounds'][0]:.1f} → {r['load_average_rounds'][1]:.1f} during the timed rounds "
        "(the machine was shared: wall time depends on the load, CPU time much less).",
        "",
        "| | median | min–max | repeats |",
        "|---|---|---|---|",
        f"| wall time of one round (s) | {statistics.median(wall):.1f} | {min(wall):.1f}–{max(wall):.1f} | {len(wall)} |",
        f"| CPU time of one round (s) | {statistics.median(cpu):.1f} | {min(cpu):.1f}–{max(cpu):.1f} | {len(cpu)} |",
        "",
        f"One-time costs, {cache}: the prior ({r['prior']['steps']:,} steps on {r['prior']['public_images']:,} public "
        f"images) {r['prior']['seconds']:.0f} s, the judge ({r['judge']['epochs']} epochs on {r['judge']['train_images']:,} "
        f"images, test accuracy {r['judge']['test_accuracy']:.3f}) {r['judge']['seconds']:.0f} s wall.",
        "",
        "In the figure (the last timed round, seed 0) the judge assigns to their class: "
        + ", ".join(f"{name}: {hit}/{n}" for name, (hit, n) in r["judged_per_class"].items()) + ".",
    ]
    controls = r["controls"]
    if controls:
        seeds = sorted({c["seed"] for c in controls})
        lines += [
            "",
            f"Controls: the targets of tests/test_instrument_controls.py, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))} (the seed sets "
            "the target's training and the attack), default budget, ξ skipped. Acc@1 pooled over the seeds' attack images "
            "with its 95 % Wilson interval (pooling ignores the variation between seeds: the per-seed range is beside it); "
            f"chance {controls[0]['chance']:.2f}.",
            "",
            "| target | its test accuracy (mean) | Acc@1, pooled [95 % CI] | Acc@1 per seed (min–max) | prior baseline (pooled) "
            "| lift (pooled) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, label in CONTROLS.items():
            rows = [c for c in controls if c["target"] == name]
            hits = sum(round(c["acc1"] * c["num_images"]) for c in rows)
            n = sum(int(c["num_images"]) for c in rows)
            base_hits = sum(round(c["baseline_acc1"] * c["baseline_num_images"]) for c in rows)
            base_n = sum(int(c["baseline_num_images"]) for c in rows)
            lo, hi = wilson_interval(hits, n)
            acc = [c["acc1"] for c in rows]
            lines.append(
                f"| {label} | {statistics.fmean(c['target_accuracy'] for c in rows):.3f} | {hits}/{n} = {hits / n:.2f} "
                f"[{lo:.2f}, {hi:.2f}] | {min(acc):.2f}–{max(acc):.2f} | {base_hits / base_n:.2f} "
                f"| {hits / n - base_hits / base_n:+.2f} |"
            )
        inside = [name for name in CONTROLS if name != "trained" and _chance_inside(controls, name)]
        lines += ["", f"Chance lies inside the pooled interval of {len(inside)} of the {len(CONTROLS) - 1} controls that "
                      f"never saw a private label ({', '.join(CONTROLS[n] for n in inside) if inside else 'none'})."]
    render = ".venv/bin/python scripts/bench_model_inversion.py --render --write-docs"
    if out.resolve() != DEFAULT_OUT.resolve():
        render += f" --out {blocks.shown_path(out)}"
    lines += ["", blocks.stamp(meta, out, render)]
    return "\n".join(lines)


def _chance_inside(controls: list[dict[str, Any]], name: str) -> bool:
    rows = [c for c in controls if c["target"] == name]
    lo, hi = wilson_interval(sum(round(c["acc1"] * c["num_images"]) for c in rows), sum(int(c["num_images"]) for c in rows))
    return lo <= rows[0]["chance"] <= hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-dir", default=None, help="prior/judge cache [default: a fresh temporary folder]")
    parser.add_argument("--figure", type=Path, default=None, help="write the attack-vs-real figure of the last repeat here")
    parser.add_argument("--controls", action="store_true", help="also score the untrained, shuffled-label and public-data "
                                                               "targets")
    parser.add_argument("--control-seeds", default="0,1,2", help="[default: %(default)s]")
    blocks.add_block_arguments(parser, DEFAULT_OUT, DOC)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        with tempfile.TemporaryDirectory(prefix="bench-mi-cache-") as fresh:
            results = measure(args, args.cache_dir or fresh)
        return {"torch_threads": args.threads, "fresh_cache": args.cache_dir is None}, {"results": results}

    blocks.measure_and_render(SCRIPT, args.out, DOC, render_only=args.render, write_docs=args.write_docs,
                              measure=run, render=markdown)

if __name__ == "__main__":
    main()
