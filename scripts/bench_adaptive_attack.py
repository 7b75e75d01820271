"""How much of the Acc@1 lost to negative label smoothing does an adaptive attacker win back?

Struppek et al. (2024) find that α < 0 makes model inversion fail; their reviewers asked
whether an attacker who knows the defense can adapt. Negative smoothing inflates the
target's logits (its loss is unbounded below), so PPA's softmax-based stage-1/3 ranking
saturates. The adaptive variants here are scale-invariant (fedls/attacks/model/losses.py):

* ``ppa``: Poincaré loss, softmax-confidence ranking (the paper's attack, fedls' default);
* ``margin-rank``: Poincaré loss, normalised-logit-margin ranking in stages 1 and 3;
* ``adaptive``: the logit-margin loss and the margin ranking;
* ``budget-m`` and ``budget-l``: the Poincaré loss with margin ranking and a larger search —
  a pool of 8,000 latents, 60 candidates per class and 200 optimisation steps (M), or 16,000,
  120 and 400 (L). Negative smoothing makes the target's stage-1 ranking of prior samples less
  informative; an attacker who knows it can spend more candidates and steps instead of
  trusting that ranking. All of these are ``[model_attack.ppa]`` options (``ranking``,
  ``pool_size``, ``candidates_per_class``, ``steps``).

Setting: bundled digits with the class-disjoint split (private 0–4, prior trained on 5–9),
targets (``cnn``) trained centrally with the recipe of Struppek et al. (Adam 1e-3, no
clipping; negative α after a warm-up of hard-label epochs), α ∈ {0, −0.05}, several seeds
(the seed sets the target's initialisation, batch order and the attack). Scored by the judge
(Acc@1 over 50 images per attack, no ξ). Writes JSON, a figure, and the generated section of
docs/model_inversion.md (with the fedls version, the commit and this command):

    .venv/bin/python scripts/bench_adaptive_attack.py --seeds 0,1,2,3,4 --write-docs
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _docblocks as blocks
import torch

from fedls.attacks.model.ppa import run_ppa
from fedls.data import dataset_tensors, load_dataset
from fedls.federation.observers.model_inversion import ModelInversion, image_strip, parse_model_attack
from fedls.metrics.inversion import score_inversion
from fedls.metrics.judge import accuracy
from fedls.models import build_model
from fedls.provenance import provenance
from fedls.smoothing import label_smoothing_loss
from fedls.stats import paired_test

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "model_inversion.md"
VARIANTS = {
    "ppa": {"loss": "poincare", "ranking": "confidence"},
    "margin-rank": {"loss": "poincare", "ranking": "margin"},
    "adaptive": {"loss": "logit-margin", "ranking": "margin"},
    "budget-m": {"loss": "poincare", "ranking": "margin", "pool_size": 8000, "candidates_per_class": 60, "steps": 200},
    "budget-l": {"loss": "poincare", "ranking": "margin", "pool_size": 16000, "candidates_per_class": 120, "steps": 400},
}
ADAPTIVE = ("margin-rank", "adaptive", "budget-m", "budget-l")
ALPHAS = (0.0, -0.05)
RECIPE_TEXT = {
    "adam": "Struppek et al.'s: Adam 1e-3, batch 32, no clipping",
    "sgd-clip": "fedls' default client recipe: SGD lr 0.05, momentum 0.9, batch 16, gradient-norm clipping 1.0",
}
log = logging.getLogger("bench_adaptive_attack")


RECIPES = {
    # Struppek et al. 2024: Adam 1e-3, no gradient clipping
    "adam": {"optimizer": "adam", "lr": 1e-3, "batch": 32, "clip": 0.0},
    # fedls' default client recipe (SGD with momentum 0.9, lr 0.05, batch 16, gradient-norm clipping at 1.0)
    "sgd-clip": {"optimizer": "sgd", "lr": 0.05, "batch": 16, "clip": 1.0},
}


def train_target(x: torch.Tensor, y: torch.Tensor, alpha: float, epochs: int, warmup: int, seed: int,
                 recipe: str = "adam") -> torch.nn.Module:
    """Central training with one of :data:`RECIPES`; ``warmup`` hard-label epochs before a
    negative α (Struppek et al.'s warm-up), positive/zero α from the start."""
    r = RECIPES[recipe]
    torch.manual_seed(seed)
    model = build_model("cnn", tuple(x.shape[1:]), 5)  # type: ignore[arg-type]
    optimizer = (torch.optim.Adam(model.parameters(), r["lr"]) if r["optimizer"] == "adam"
                 else torch.optim.SGD(model.parameters(), r["lr"], momentum=0.9))
    rng = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        a = 0.0 if alpha < 0 and epoch < warmup else alpha
        for batch in torch.randperm(len(y), generator=rng).split(int(r["batch"])):
            optimizer.zero_grad()
            label_smoothing_loss(model(x[batch]), y[batch], a).backward()
            if r["clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), r["clip"])
            optimizer.step()
    return model.eval()


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    def acc(alpha: float, variant: str) -> list[float]:
        return [r["acc1"] for s in seeds for r in rows if r["seed"] == s and r["alpha"] == alpha and r["variant"] == variant]

    table = {f"{variant}@{alpha:g}": dict(zip(("mean", "sd"), mean_sd(acc(alpha, variant)), strict=True))
             for alpha in ALPHAS for variant in VARIANTS}
    for alpha in ALPHAS:
        per_seed = [r for r in rows if r["alpha"] == alpha and r["variant"] == "ppa"]
        table[f"target@{alpha:g}"] = {
            "test_accuracy": mean_sd([r["target_accuracy"] for r in per_seed]),
            "logit_norm": mean_sd([r["logit_norm"] for r in per_seed]),
            "baseline_acc1": mean_sd([r["baseline_acc1"] for r in per_seed]),
        }
    lost = [a - b for a, b in zip(acc(0.0, "ppa"), acc(-0.05, "ppa"), strict=True)]
    out: dict[str, Any] = {"table": table, "lost_to_negative_alpha": dict(zip(("mean", "sd"), mean_sd(lost), strict=True))}
    for variant in ADAPTIVE:
        won = [a - b for a, b in zip(acc(-0.05, variant), acc(-0.05, "ppa"), strict=True)]
        test = paired_test(acc(-0.05, variant), acc(-0.05, "ppa"))
        gap = [a - b for a, b in zip(acc(0.0, variant), acc(-0.05, variant), strict=True)]
        mean_lost = statistics.fmean(lost)
        out[variant] = {
            "won_back_at_negative_alpha": dict(zip(("mean", "sd"), mean_sd(won), strict=True)),
            "won_back_ci": [test.ci_low, test.ci_high],
            "won_back_p": test.p_t,
            "fraction_of_loss_recovered": statistics.fmean(won) / mean_lost if mean_lost > 0 else float("nan"),
            "remaining_gap_alpha0_minus_negative": dict(zip(("mean", "sd"), mean_sd(gap), strict=True)),
        }
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    t = summary["table"]

    def cell(key: str) -> str:
        return f"{t[key]['mean']:.3f} ± {t[key]['sd']:.3f}"

    lines = [
        markers(meta["recipe"])[0],
        "",
        f"### Adaptive attacker against negative smoothing, recipe `{meta['recipe']}` (measured)",
        "",
        f"fedls {meta['fedls_version']}, commit `{meta['git_commit']}`, {meta['date']}; "
        f"{len(meta['seeds'])} seeds ({', '.join(map(str, meta['seeds']))}), {meta['seconds']:.0f} s "
        f"on {meta['threads']} CPU thread(s) of a shared machine. Command:",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        f"Digits, class-disjoint (private 0–4, prior on 5–9), central `cnn` targets, recipe `{meta['recipe']}` "
        f"({RECIPE_TEXT[meta['recipe']]}), {meta['epochs']} epochs, α = −0.05 after {meta['warmup']} hard-label epochs. "
        f"Default PPA budget (pool 2,000, 20 candidates, 10 images per class = 50 per attack, 70 steps); "
        f"Acc@1 by the judge (test accuracy {meta['judge_accuracy']:.3f}). Mean ± sd over seeds (chance 0.20).",
        "",
        "| target | test acc. | mean logit norm | prior baseline | PPA (Poincaré, confidence) | margin ranking "
        "| adaptive (logit-margin loss + margin ranking) | budget M (margin ranking, pool 8,000, 60 candidates, 200 steps) "
        "| budget L (margin ranking, pool 16,000, 120 candidates, 400 steps) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for alpha in ALPHAS:
        target = t[f"target@{alpha:g}"]
        lines.append(
            f"| α = {alpha:g} | {target['test_accuracy'][0]:.3f} ± {target['test_accuracy'][1]:.3f} "
            f"| {target['logit_norm'][0]:.1f} ± {target['logit_norm'][1]:.1f} "
            f"| {target['baseline_acc1'][0]:.3f} ± {target['baseline_acc1'][1]:.3f} "
            f"| {cell(f'ppa@{alpha:g}')} | {cell(f'margin-rank@{alpha:g}')} | {cell(f'adaptive@{alpha:g}')} "
            f"| {cell(f'budget-m@{alpha:g}')} | {cell(f'budget-l@{alpha:g}')} |"
        )
    lost = summary["lost_to_negative_alpha"]
    lines += ["", f"Acc@1 lost to α = −0.05 under PPA (α = 0 minus α = −0.05, paired per seed): "
                  f"{lost['mean']:+.3f} ± {lost['sd']:.3f}.", ""]
    names = {"margin-rank": "Margin ranking alone", "adaptive": "The adaptive loss", "budget-m": "Budget M",
             "budget-l": "Budget L"}
    for variant in ADAPTIVE:
        v = summary[variant]
        won, gap = v["won_back_at_negative_alpha"], v["remaining_gap_alpha0_minus_negative"]
        frac = v["fraction_of_loss_recovered"]
        low, high = v.get("won_back_ci", [None, None])
        interval = ""
        if low is not None and high is not None and v.get("won_back_p") is not None:
            interval = f", 95 % CI [{low:+.3f}, {high:+.3f}], paired t p = {v['won_back_p']:.2g}"
        share = "there was no loss to recover" if frac != frac else f"{100 * frac:.0f} % of the loss"
        goal = "" if frac != frac else (" — at least half in the mean" if frac >= 0.5 else " — less than half")
        lines.append(
            f"{names[variant]} wins back {won['mean']:+.3f} ± {won['sd']:.3f} Acc@1 on the α = −0.05 targets{interval} "
            f"({share}{goal}); its own gap between α = 0 and −0.05 is {gap['mean']:+.3f} ± {gap['sd']:.3f}."
        )
        lines.append("")
    lines += [f"![α = −0.05 target: PPA and the adaptive variants]({meta['figure']})", "", markers(meta["recipe"])[1]]
    return "\n".join(lines)


def comparison_figure(shown: dict[str, tuple[Any, dict[str, float]]], inversion: ModelInversion, title: str) -> Any:
    """One row per class: each attack variant's images (with the judge's verdict) and real
    private images, nearest-neighbour upscaled."""
    from matplotlib.figure import Figure

    x, y = dataset_tensors(inversion.splits.train)
    classes = next(iter(shown.values()))[0].classes
    columns = [*shown, "real"]
    figure = Figure(figsize=(3.3 * len(columns), 0.85 * len(classes) + 1.0), dpi=110)
    axes = figure.subplots(len(classes), len(columns), squeeze=False)
    with torch.no_grad():
        verdicts = {v: inversion.judge.model(r.images).argmax(-1) for v, (r, _) in shown.items()}
    for row, c in enumerate(classes):
        for col, name in enumerate(columns):
            ax = axes[row, col]
            if name == "real":
                images, label = x[y == c][:5], "real private images"
            else:
                result, m = shown[name]
                mask = result.targets == c
                images = result.images[mask][:5]
                label = f"{name}: Acc@1 {m['acc1']:.2f} [{m['acc1_low']:.2f}, {m['acc1_high']:.2f}]"
                ax.set_xlabel(f"judge {int((verdicts[name][mask] == c).sum())}/{int(mask.sum())}", fontsize=7)
            ax.imshow(image_strip(images, 5), cmap="gray", interpolation="nearest", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=8)
        axes[row, 0].set_ylabel(inversion.splits.class_names[c], rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def markers(recipe: str) -> tuple[str, str]:
    """Start and end of the generated section of one recipe in docs/model_inversion.md."""
    return blocks.markers("bench_adaptive_attack.py", "" if recipe == "adam" else f"--recipe {recipe}")


def write_docs(section: str, recipe: str) -> None:
    """Replace the recipe's block (``section`` carries its own marker lines, see :func:`markdown`)."""
    begin, end = markers(recipe)
    blocks.write_block(DOC, begin, end, section.removeprefix(begin).removesuffix(end))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="adam")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", type=Path, default=None, help="[default: docs/img/mi_adaptive[_RECIPE].json]")
    parser.add_argument("--figure", type=Path, default=None, help="[default: docs/img/mi_adaptive_attack[_RECIPE].png]")
    parser.add_argument("--write-docs", action="store_true", help="replace the generated section of docs/model_inversion.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    suffix = "" if args.recipe == "adam" else f"_{args.recipe}"
    figure_path = args.figure or ROOT / "docs" / "img" / f"mi_adaptive_attack{suffix}.png"
    started = time.perf_counter()
    splits = load_dataset("digits")
    options = parse_model_attack({"cache_dir": args.cache_dir}, splits.num_classes)
    inversion = ModelInversion(options, splits, "cnn")
    prior, judge = inversion.prior, inversion.judge
    train, test = dataset_tensors(splits.train), dataset_tensors(splits.test)
    rows: list[dict[str, Any]] = []
    shown: dict[str, Any] = {}
    for seed in seeds:
        for alpha in ALPHAS:
            target = train_target(*train, alpha, args.epochs, args.warmup, seed, args.recipe)
            with torch.no_grad():
                logit_norm = float(target(test[0]).norm(dim=-1).mean())
            target_accuracy = accuracy(target, *test)
            for variant, changes in VARIANTS.items():
                ppa = options.ppa.replace("model_attack.ppa", seed=seed, **changes)
                result = run_ppa(target, prior, splits.num_classes, ppa)
                m = score_inversion(result.images, result.targets, result.baseline_images, result.baseline_targets, judge,
                                    target_accuracy, train, test, options.evaluation, extraction=False)
                rows.append({"seed": seed, "alpha": alpha, "variant": variant, "target_accuracy": target_accuracy,
                             "logit_norm": logit_norm, **{k: m[k] for k in ("acc1", "acc1_low", "acc1_high", "baseline_acc1",
                                                                           "num_images", "acc1_reliable")}})
                log.info("seed %d α=%g %-11s acc1 %.2f [%.2f, %.2f] (target %.3f, |z| %.1f)", seed, alpha, variant, m["acc1"],
                         m["acc1_low"], m["acc1_high"], target_accuracy, logit_norm)
                if seed == seeds[0] and alpha < 0:
                    shown[variant] = (result, m)
    summary = summarise(rows, seeds)
    meta = {**provenance(), "date": time.strftime("%Y-%m-%d"), "seeds": seeds, "epochs": args.epochs, "warmup": args.warmup,
            "recipe": args.recipe, "figure": f"img/{figure_path.name}",
            "threads": args.threads, "seconds": time.perf_counter() - started, "judge_accuracy": judge.test_accuracy,
            "command": " ".join([".venv/bin/python scripts/bench_adaptive_attack.py", *sys.argv[1:]])}
    out = args.out or ROOT / "docs" / "img" / f"mi_adaptive{'' if args.recipe == 'adam' else '_' + args.recipe}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2))
    if shown:
        comparison_figure(shown, inversion, f"α = −0.05 target ({args.recipe}), seed {seeds[0]}").savefig(figure_path)
    section = markdown(summary, meta)
    print(section)
    if args.write_docs:
        write_docs(section, args.recipe)


if __name__ == "__main__":
    main()
