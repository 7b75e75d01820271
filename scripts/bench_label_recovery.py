"""Label recovery from FedAvg updates vs batch size and local steps (DESIGN.md, "In FL").

A client trains the global CNN with plain SGD for ``steps`` full-batch steps on ``batch``
samples of digits (smoothing α); the server estimates the gradient as −Δθ/(η·steps) and
runs soft-label recovery. Reference label: the batch-mean soft target.
Usage: .venv/bin/python scripts/bench_label_recovery.py --out bench-out
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from fedls.attacks.gradient import estimate_gradient, recover_soft_label
from fedls.data import load_dataset
from fedls.models import build_model
from fedls.smoothing import smoothed_targets, soft_target_cross_entropy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    train = load_dataset("digits").train
    images = torch.stack([train[i][0] for i in range(len(train))])
    labels = torch.tensor([int(train[i][1]) for i in range(len(train))])
    torch.manual_seed(0)
    global_model = build_model(args.model, (1, 8, 8), 10)
    start = {k: v.detach().numpy().copy() for k, v in global_model.state_dict().items()}
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 2, 4, 8):
        for steps in (1, 2, 4, 8):
            success = top1 = 0
            errors = []
            for _ in range(args.trials):
                idx = torch.as_tensor(rng.choice(len(images), batch, replace=False))
                targets = smoothed_targets(labels[idx], 10, args.alpha)
                model = build_model(args.model, (1, 8, 8), 10)
                model.load_state_dict(global_model.state_dict())
                optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
                for _ in range(steps):
                    optimizer.zero_grad()
                    soft_target_cross_entropy(model(images[idx]), targets).backward()
                    optimizer.step()
                after = {k: v.detach().numpy() for k, v in model.state_dict().items()}
                grad = estimate_gradient(start, after, args.lr, steps)
                bias = "head.bias" in grad
                rec = recover_soft_label(grad["head.weight"], start["head.weight"], grad.get("head.bias") if bias else None,
                                         start.get("head.bias") if bias else None, nonnegative_features=True)
                reference = targets.double().mean(0).numpy()
                error = float(np.abs(rec.label - reference).max())
                errors.append(error)
                success += error < 1e-3
                top1 += rec.top1 in set(labels[idx].tolist())
            rows.append({"batch": batch, "steps": steps, "success_rate": success / args.trials,
                         "top1_in_batch": top1 / args.trials, "median_max_error": float(np.median(errors))})
            print(rows[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "label_recovery_fedavg.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for batch in (1, 2, 4, 8):
        sel = [r for r in rows if r["batch"] == batch]
        ax.plot([r["steps"] for r in sel], [r["median_max_error"] for r in sel], marker="o", label=f"batch {batch}")
    ax.set(xscale="log", yscale="log", xlabel="local SGD steps", ylabel="median max |ŷ − ȳ|", title=f"{args.model}, α={args.alpha}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "label_recovery_fedavg.png", dpi=120)


if __name__ == "__main__":
    main()
