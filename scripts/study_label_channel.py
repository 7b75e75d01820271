"""Cross-channel study (issue 11): are the clients' label counts recoverable from their FedAvg
updates under positive and negative label smoothing, from the untrained to the trained model?

A plain-PyTorch FedAvg loop (no Flower) over IID shards of the bundled digits: every round each
client trains the global ``cnn`` with fedls' own client code (``fedls.training.local.train_local``,
SGD momentum 0.9, lr 0.05, clipping 1.0, the round's α held constant from round 1), the server
averages the weights (weighted by shard size) and runs
:func:`~fedls.attacks.gradient.recover_update_labels` on every client's update — from the
server's view only; the shard's true counts are used for scoring after the attack returns.

Two client recipes: ``one-step`` (one full-batch local step: the setting where the recovery is
exact by construction on untrained models) and ``default`` (fedls' default: batch 16, 2 local
epochs, i.e. ≈ 20 momentum steps). Rates carry Wilson 95 % intervals over clients × seeds.

Usage (writes docs/results/label_channel.json, a PNG, and the generated block of
docs/gradient_inversion.md; ``--render`` re-renders the block from the JSON without measuring):

    .venv/bin/python scripts/study_label_channel.py --seeds 0 1 --clients 10 --rounds 6 --write-docs
    .venv/bin/python scripts/study_label_channel.py --render --write-docs
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _docblocks as blocks
import numpy as np
import torch
from torch.utils.data import Subset

from fedls.attacks.gradient import recover_update_labels
from fedls.data import DataOptions, dataset_targets, load_dataset, partition
from fedls.defenses.base import Defense, TrainingContext
from fedls.models import build_model
from fedls.stats import paired_test, wilson_interval
from fedls.threat_model import ClientRecipe
from fedls.training.local import train_local

SCRIPT = "study_label_channel.py"
DOC = blocks.ROOT / "docs" / "gradient_inversion.md"
DEFAULT_OUT = blocks.RESULTS / "label_channel.json"
ALPHAS = (-0.05, 0.0, 0.1)
RECIPES = {
    "one-step": {"batch_size": None, "local_epochs": 1},  # batch_size None: the whole shard
    "default": {"batch_size": 16, "local_epochs": 2},
}


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a rate (no trials: the whole range)."""
    return wilson_interval(successes, n) if n else (0.0, 1.0)


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(-1) == labels).float().mean())


def run(alpha: float, recipe_name: str, seed: int, clients: int, rounds: int) -> list[dict]:
    splits = load_dataset("digits", DataOptions(seed=seed))
    train, test = splits.train, splits.test
    c = splits.num_classes
    targets = np.asarray(dataset_targets(train))
    shards = partition(targets, clients, "iid", seed)
    test_images = torch.stack([test[i][0] for i in range(len(test))])
    test_labels = torch.tensor([int(test[i][1]) for i in range(len(test))])
    torch.manual_seed(seed)
    global_model = build_model("cnn", splits.image_shape, c)
    rows = []
    for server_round in range(1, rounds + 1):
        sent = {k: v.detach().numpy().copy() for k, v in global_model.state_dict().items()}
        updates = []
        for client, shard in enumerate(shards):
            spec = RECIPES[recipe_name]
            batch = spec["batch_size"] or len(shard)
            recipe = ClientRecipe(lr=0.05, batch_size=batch, local_epochs=spec["local_epochs"], max_grad_norm=1.0, alpha=alpha)
            model = build_model("cnn", splits.image_shape, c)
            model.load_state_dict(global_model.state_dict())
            ctx = TrainingContext(server_round=server_round, client_id=client, num_samples=len(shard), batch_size=batch,
                                  local_epochs=recipe.local_epochs, lr=recipe.lr, device=torch.device("cpu"))
            generator = torch.Generator().manual_seed(seed * 100_003 + server_round * 101 + client)
            result = train_local(model, Subset(train, shard.tolist()), alpha, ctx, Defense(), generator,
                                 max_grad_norm=recipe.max_grad_norm)
            weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
            # the attack sees: sent weights, returned weights, the recipe, the reported sizes
            leak = recover_update_labels(sent, weights, recipe, num_examples=len(shard), local_steps=result.steps,
                                         head_names=("head.weight", "head.bias"))
            truth = np.bincount(targets[shard], minlength=c)  # scoring only, after the attack
            rows.append({
                "alpha": alpha, "recipe": recipe_name, "seed": seed, "round": server_round, "client": client,
                "steps": result.steps, "exact": bool(np.array_equal(leak.counts, truth)), "claimed": bool(leak.success),
                "count_mae": float(np.abs(leak.counts - truth).mean()),
                # the attacker's best guess without the update: N/C samples per class
                "uniform_mae": float(np.abs(truth - len(shard) / c).mean()),
                "alpha_error": abs(leak.alpha - alpha) if leak.alpha_identifiable else None,
                "ms": 1000 * leak.seconds,
            })
            updates.append((len(shard), weights))
        total = sum(n for n, _ in updates)
        averaged = {k: sum(n * torch.as_tensor(w[k], dtype=torch.float32) for n, w in updates) / total for k in sent}
        global_model.load_state_dict(averaged)
        acc = accuracy(global_model, test_images, test_labels)
        for r in rows[-len(shards):]:
            r["global_accuracy"] = acc
        print(f"alpha={alpha:+.2f} {recipe_name} seed={seed} round={server_round} acc={acc:.3f} "
              f"exact={np.mean([r['exact'] for r in rows[-len(shards):]]):.2f} "
              f"mae={np.mean([r['count_mae'] for r in rows[-len(shards):]]):.2f}", flush=True)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Per (recipe, α, round): exact-count rate with Wilson CI, count MAE, α̂ error, accuracy."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["recipe"], r["alpha"], r["round"]), []).append(r)
    out = []
    for (recipe, alpha, rnd), group in sorted(cells.items()):
        exact = sum(r["exact"] for r in group)
        lo, hi = wilson(exact, len(group))
        errs = [r["alpha_error"] for r in group if r["alpha_error"] is not None]
        out.append({"recipe": recipe, "alpha": alpha, "round": rnd, "n": len(group), "exact_rate": exact / len(group),
                    "exact_lo": lo, "exact_hi": hi, "count_mae": float(np.mean([r["count_mae"] for r in group])),
                    "uniform_mae": float(np.mean([r["uniform_mae"] for r in group])),
                    "better_than_uniform": float(np.mean([r["count_mae"] < r["uniform_mae"] for r in group])),
                    "false_claims": sum(r["claimed"] and not r["exact"] for r in group),
                    "alpha_err_median": float(np.median(errs)) if errs else None, "alpha_identified": len(errs),
                    "global_accuracy": float(np.mean([r["global_accuracy"] for r in group]))})
    return out


def readings(result: dict) -> list[str]:
    """Per recipe and α: does the recovered count beat the attacker's guess without the update
    (N/C per class) in the last round? Judged per client on the count error's improvement over
    the guess's, with a paired t-test across the clients of every seed: a significant
    improvement means the channel leaks. The share of clients beating the guess (Wilson 95 %)
    is shown beside it."""
    rows, last = result["rows"], max(c["round"] for c in result["cells"])
    lines = []
    for recipe in sorted({c["recipe"] for c in result["cells"]}):
        for alpha in sorted({c["alpha"] for c in result["cells"]}):
            group = [r for r in rows if r["recipe"] == recipe and r["alpha"] == alpha and r["round"] == last]
            better = sum(r["count_mae"] < r["uniform_mae"] for r in group)
            low, high = wilson(better, len(group))
            test = paired_test([r["uniform_mae"] for r in group], [r["count_mae"] for r in group])
            if test.p_t is None or test.ci_low is None or test.ci_high is None:
                gain, verdict = f"{test.mean_diff:+.2f}", "not testable"
            else:
                gain = f"{test.mean_diff:+.2f} [{test.ci_low:+.2f}, {test.ci_high:+.2f}], p = {test.p_t:.2g}"
                verdict = ("leaks the counts" if test.mean_diff > 0 else "worse than the guess") if test.p_t < 0.05 \
                    else "no better than the guess (inside the noise)"
            mae = float(np.mean([r["count_mae"] for r in group]))
            guess = float(np.mean([r["uniform_mae"] for r in group]))
            lines.append(f"| {recipe} | {alpha:+.2f} | {last} | {mae:.2f} | {guess:.2f} | {gain} | {better}/{len(group)} "
                         f"[{low:.2f}, {high:.2f}] | **{verdict}** |")
    return lines


def markdown(result: dict, path: Path) -> str:
    """The generated block: the verdict per recipe and α in the last round, then every round."""
    meta, cells = result["meta"], result["cells"]
    lines = [f"Plain-PyTorch FedAvg over IID digits shards (C = 5), fedls' `train_local`, clipping 1.0, α held from round "
             f"1; seeds {', '.join(map(str, meta['seeds']))}, {meta['clients']} clients, {meta['rounds']} rounds. "
             "Rates over clients × seeds with Wilson 95 % intervals.", "",
             "| recipe | α | round | count MAE | uniform-guess MAE | improvement over the guess [95 % CI], paired t "
             "| clients beating the guess [95 % CI] | verdict |",
             "|---|---|---|---|---|---|---|---|", *readings(result), "",
             f"Improvement = the guess's count error minus the attack's, per client ({len(meta['seeds'])} seeds × "
             f"{meta['clients']} clients, paired t-test); *leaks the counts* when it is significantly above zero "
             "(p < 0.05).", "",
             "<details><summary>Every round</summary>", "",
             "| recipe | α | round | global acc. | exact counts (95 % CI) | count MAE | uniform-guess MAE | clients beating it | "
             "median \\|α̂−α\\| (identified) | false claims |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        err = "–" if cell["alpha_err_median"] is None else f"{cell['alpha_err_median']:.4f}"
        lines.append(f"| {cell['recipe']} | {cell['alpha']:+.2f} | {cell['round']} | {cell['global_accuracy']:.3f} | "
                     f"{cell['exact_rate']:.2f} ({cell['exact_lo']:.2f}–{cell['exact_hi']:.2f}) | {cell['count_mae']:.2f} | "
                     f"{cell['uniform_mae']:.2f} | {cell['better_than_uniform']:.2f} | "
                     f"{err} ({cell['alpha_identified']}/{cell['n']}) | {cell['false_claims']} |")
    lines += ["", "</details>", "", blocks.stamp(meta, path, f".venv/bin/python scripts/{SCRIPT} --render --write-docs")]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    alphas = sorted({c["alpha"] for c in cells})
    colors = plt.cm.coolwarm(np.linspace(0, 1, len(alphas)))
    for color, alpha in zip(colors, alphas, strict=True):
        one = [c for c in cells if c["recipe"] == "one-step" and c["alpha"] == alpha]
        dft = [c for c in cells if c["recipe"] == "default" and c["alpha"] == alpha]
        rounds = [c["round"] for c in one]
        axes[0].plot(rounds, [c["count_mae"] for c in one], marker="o", color=color, label=f"α = {alpha:+.2f}")
        axes[0].plot(rounds, [c["uniform_mae"] for c in one], linestyle=":", color=color)
        axes[1].plot([c["round"] for c in dft], [c["count_mae"] for c in dft], marker="s", color=color, label=f"α = {alpha:+.2f}")
        axes[1].plot([c["round"] for c in dft], [c["uniform_mae"] for c in dft], linestyle=":", color=color,
                     label=f"uniform guess N/C, α = {alpha:+.2f}")
        axes[2].plot(rounds, [c["global_accuracy"] for c in one], marker="o", color=color, label=f"α = {alpha:+.2f} (one-step)")
    axes[0].set(xlabel="federated round", ylabel="mean |count error| per class (dotted: uniform guess N/C)",
                title="One full-batch local step (clipping 1.0)")
    axes[1].set(xlabel="federated round", ylabel="mean |count error| per class",
                title="fedls default recipe (batch 16, 2 epochs)")
    axes[2].set(xlabel="federated round", ylabel="global test accuracy", title="Model utility (one-step recipe)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Label counts from FedAvg updates vs smoothing factor α and training progress (digits, cnn)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    blocks.add_block_arguments(parser, DEFAULT_OUT, DOC)
    parser.add_argument("--figure", type=Path, default=Path("docs/img/label_channel.png"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    def measure() -> tuple[dict[str, Any], dict[str, Any]]:
        rows = [r for recipe in RECIPES for alpha in args.alphas for seed in args.seeds
                for r in run(alpha, recipe, seed, args.clients, args.rounds)]
        result = {"cells": aggregate(rows), "rows": rows}
        figure(result, args.figure)
        return {"seeds": args.seeds, "clients": args.clients, "rounds": args.rounds, "torch_threads": 1}, result

    blocks.measure_and_render(SCRIPT, args.out, DOC, render_only=args.render, write_docs=args.write_docs,
                              measure=measure, render=markdown)

if __name__ == "__main__":
    main()
