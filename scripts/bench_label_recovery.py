"""Benchmark of batch soft-label recovery (issue 11): exact-count rate, α̂ error and time.

Three parts, each writing JSON rows (``--out FILE``):

* ``batch``: the mean head gradient of one batch (digits, ``cnn`` with head bias and
  ``cnn-nobias``), B ∈ {1, 4, 16, 64}, α ∈ {−0.1, 0, 0.1, 0.3}, an untrained model and one
  trained for 100 SGD steps → :func:`recover_batch_labels`.
* ``fedavg``: a real client update (``fedls.training.local.train_local``, SGD momentum 0.9,
  lr 0.05) of ``steps × batch`` samples, local steps ∈ {1, 2, 5, 10}, client clipping off/on
  (``max_grad_norm`` 1.0) → :func:`recover_update_labels`, counts over the client's data.
* ``timing``: synthetic heads with C = 10, d = 512 (time per call only).

Rates carry Wilson 95 % intervals. Seeds are fixed (numpy ``default_rng(seed)`` per cell,
torch seed 1 for the model). Usage:

    .venv/bin/python scripts/bench_label_recovery.py --out bench-out/label_bench.json
    .venv/bin/python scripts/bench_label_recovery.py --quick --out /tmp/quick.json
    .venv/bin/python scripts/bench_label_recovery.py --table bench-out/label_bench.json  # Markdown
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from fedls.attacks.gradient import BatchLabelRecovery, recover_batch_labels, recover_update_labels
from fedls.data import DataOptions, load_dataset
from fedls.defenses.base import Defense, TrainingContext
from fedls.models import build_model
from fedls.provenance import provenance
from fedls.smoothing import label_smoothing_loss
from fedls.stats import wilson_interval
from fedls.threat_model import ClientRecipe
from fedls.training.local import train_local

C = 10
TRAINED_STEPS = 100


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a rate (no trials: the whole range)."""
    return wilson_interval(successes, n) if n else (0.0, 1.0)


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    train = load_dataset("digits", DataOptions()).train
    images = torch.stack([train[i][0] for i in range(len(train))])
    labels = torch.tensor([int(train[i][1]) for i in range(len(train))])
    return images, labels


def make_model(name: str, trained: bool, images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_model(name, (1, 8, 8), C)
    if trained:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        generator = torch.Generator().manual_seed(0)
        for _ in range(TRAINED_STEPS):
            idx = torch.randint(0, len(images), (32,), generator=generator)
            optimizer.zero_grad()
            label_smoothing_loss(model(images[idx]), labels[idx], 0.1).backward()
            optimizer.step()
    return model


def tally(result: BatchLabelRecovery, labels: torch.Tensor, alpha: float, exact: list[bool], flagged: list[bool],
          claimed: list[bool], alpha_err: list[float], count_err: list[float], seconds: list[float]) -> None:
    """Score one recovery against the batch's true labels, appending to the cell's lists."""
    truth = np.bincount(labels.numpy(), minlength=C)
    ok = bool(np.array_equal(result.counts, truth))
    exact.append(ok)
    claimed.append(result.success)
    flagged.append(result.success and ok)
    if result.alpha_identifiable:
        alpha_err.append(abs(result.alpha - alpha))
    count_err.append(float(np.abs(result.counts - truth).mean()))
    seconds.append(result.seconds)


def summarise(kind: str, config: dict, exact: list[bool], flagged: list[bool], claimed: list[bool],
              alpha_err: list[float], count_err: list[float], seconds: list[float]) -> dict:
    n = len(exact)
    lo, hi = wilson(sum(exact), n)
    return {
        "kind": kind, **config, "trials": n,
        "exact_rate": sum(exact) / n, "exact_lo": lo, "exact_hi": hi,
        "claimed_rate": sum(claimed) / n,
        "claimed_and_right": sum(flagged), "claimed_total": sum(claimed),
        "alpha_identified": len(alpha_err),
        "alpha_err_median": float(np.median(alpha_err)) if alpha_err else None,
        "alpha_err_p95": float(np.percentile(alpha_err, 95)) if alpha_err else None,
        "count_mae": float(np.mean(count_err)),
        "ms_median": 1000 * float(np.median(seconds)),
    }


def bench_batch(images: torch.Tensor, labels: torch.Tensor, trials: int, batches: tuple[int, ...],
                alphas: tuple[float, ...], models: tuple[str, ...]) -> list[dict]:
    rows = []
    for name in models:
        for trained in (False, True):
            model = make_model(name, trained, images, labels)
            for batch in batches:
                for alpha in alphas:
                    rng = np.random.default_rng(hash((name, trained, batch, alpha)) % 2**32)
                    exact, flagged, claimed, aerr, cerr, secs = [], [], [], [], [], []
                    for _ in range(trials):
                        idx = torch.as_tensor(rng.choice(len(images), batch, replace=False))
                        model.zero_grad()
                        label_smoothing_loss(model(images[idx]), labels[idx], alpha).backward()
                        head = model.head
                        kwargs = {"bias_grad": head.bias.grad, "bias": head.bias} if head.bias is not None else {}
                        result = recover_batch_labels(head.weight.grad, head.weight, batch_size=batch, **kwargs)
                        tally(result, labels[idx], alpha, exact, flagged, claimed, aerr, cerr, secs)
                    rows.append(summarise("batch", {"model": name, "trained": trained, "batch": batch, "alpha": alpha},
                                          exact, flagged, claimed, aerr, cerr, secs))
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_fedavg(images: torch.Tensor, labels: torch.Tensor, trials: int, batches: tuple[int, ...], steps_list: tuple[int, ...],
                 alphas: tuple[float, ...]) -> list[dict]:
    rows = []
    for trained in (False, True):
        global_model = make_model("cnn", trained, images, labels)
        start = {k: v.detach().numpy().copy() for k, v in global_model.state_dict().items()}
        for clip in (0.0, 1.0):
            for batch in batches:
                for steps in steps_list:
                    for alpha in alphas:
                        n = batch * steps
                        if n > len(images):
                            continue
                        rng = np.random.default_rng(hash((trained, clip, batch, steps, alpha)) % 2**32)
                        recipe = ClientRecipe(lr=0.05, batch_size=batch, local_epochs=1, max_grad_norm=clip, alpha=alpha)
                        exact, flagged, claimed, aerr, cerr, secs = [], [], [], [], [], []
                        for trial in range(trials):
                            idx = torch.as_tensor(rng.choice(len(images), n, replace=False))
                            model = build_model("cnn", (1, 8, 8), C)
                            model.load_state_dict(global_model.state_dict())
                            ctx = TrainingContext(server_round=1, client_id=0, num_samples=n, batch_size=batch, local_epochs=1,
                                                  lr=recipe.lr, device=torch.device("cpu"))
                            result = train_local(model, TensorDataset(images[idx], labels[idx]), alpha, ctx, Defense(),
                                                 torch.Generator().manual_seed(trial), max_grad_norm=clip)
                            after = {k: v.detach().numpy() for k, v in model.state_dict().items()}
                            rec = recover_update_labels(start, after, recipe, num_examples=n, local_steps=result.steps,
                                                        head_names=("head.weight", "head.bias"))
                            tally(rec, labels[idx], alpha, exact, flagged, claimed, aerr, cerr, secs)
                        rows.append(summarise(
                            "fedavg", {"model": "cnn", "trained": trained, "clip": clip, "batch": batch, "steps": steps,
                                       "alpha": alpha}, exact, flagged, claimed, aerr, cerr, secs))
                        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_timing(repeats: int) -> list[dict]:
    """Time per call on a synthetic C = 10, d = 512 head (a FedAvg update of 10 clipped steps)."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.05, (C, 512))
    b0 = rng.normal(0, 0.05, C)
    rows = []
    for clip in (0.0, 1.0):
        secs = []
        for _ in range(repeats):
            dw = rng.normal(0, 1e-3, (C, 512))
            db = rng.normal(0, 1e-3, C)
            db -= db.mean()
            recipe = ClientRecipe(max_grad_norm=clip, batch_size=16, local_epochs=1)
            t0 = time.perf_counter()
            recover_update_labels({"w": w0, "b": b0}, {"w": w0 + dw, "b": b0 + db}, recipe, num_examples=160, local_steps=10,
                                  head_names=("w", "b"))
            secs.append(time.perf_counter() - t0)
        rows.append({"kind": "timing", "classes": C, "features": 512, "clip": clip, "ms_median": 1000 * float(np.median(secs)),
                     "ms_max": 1000 * float(np.max(secs)), "repeats": repeats})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    """Tables for docs/gradient_inversion.md, from the JSON rows."""
    out = ["| model | trained | B | α | exact counts (95 % CI) | claimed (right/claimed) | median \\|α̂−α\\| | count MAE | ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] != "batch":
            continue
        out.append(
            f"| {r['model']} | {'yes' if r['trained'] else 'no'} | {r['batch']} | {r['alpha']:+.2f} | "
            f"{r['exact_rate']:.2f} ({r['exact_lo']:.2f}–{r['exact_hi']:.2f}) | {r['claimed_and_right']}/{r['claimed_total']} | "
            f"{_fmt(r['alpha_err_median'], 4)} | {r['count_mae']:.2f} | {r['ms_median']:.1f} |"
        )
    out += ["", "| trained | clip | batch | local steps | α | exact counts (95 % CI) | claimed (right/claimed) | count MAE | "
                "median \\|α̂−α\\| (identified) | ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] != "fedavg":
            continue
        out.append(
            f"| {'yes' if r['trained'] else 'no'} | {r['clip']:g} | {r['batch']} | {r['steps']} | {r['alpha']:+.2f} | "
            f"{r['exact_rate']:.2f} ({r['exact_lo']:.2f}–{r['exact_hi']:.2f}) | {r['claimed_and_right']}/{r['claimed_total']} | "
            f"{r['count_mae']:.2f} | {_fmt(r['alpha_err_median'], 4)} ({r['alpha_identified']}/{r['trials']}) | "
            f"{r['ms_median']:.1f} |"
        )
    timing = [r for r in rows if r["kind"] == "timing"]
    if timing:
        out += ["", "| C | d | clipping | median ms | max ms |", "|---|---|---|---|---|"]
        out += [
            f"| {r['classes']} | {r['features']} | {r['clip']:g} | {r['ms_median']:.1f} | {r['ms_max']:.1f} |" for r in timing
        ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/label_bench.json"))
    parser.add_argument("--trials", type=int, default=50, help="batches per cell (batch part)")
    parser.add_argument("--fedavg-trials", type=int, default=20, help="client updates per cell (FedAvg part)")
    parser.add_argument("--quick", action="store_true", help="a small run: few trials and cells")
    parser.add_argument("--table", type=Path, help="print the Markdown tables of an existing result file and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())["rows"]))
        return
    torch.set_num_threads(1)
    images, labels = load_digits()
    started = time.time()
    if args.quick:
        rows = bench_batch(images, labels, 5, (4, 64), (-0.1, 0.3), ("cnn",))
        rows += bench_fedavg(images, labels, 3, (16,), (1, 5), (0.1,))
        rows += bench_timing(5)
    else:
        rows = bench_batch(images, labels, args.trials, (1, 4, 16, 64), (-0.1, 0.0, 0.1, 0.3), ("cnn", "cnn-nobias"))
        rows += bench_fedavg(images, labels, args.fedavg_trials, (4, 16), (1, 2, 5, 10), (-0.1, 0.1, 0.3))
        rows += bench_timing(20)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": "scripts/bench_label_recovery.py" + (" --quick" if args.quick else
                                                           f" --trials {args.trials} --fedavg-trials {args.fedavg_trials}"),
            "seconds": time.time() - started, "trained_steps": TRAINED_STEPS, **provenance()}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    main()
