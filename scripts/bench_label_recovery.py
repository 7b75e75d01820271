"""Label recovery from gradients and FedAvg updates: the measurements in docs/gradient_inversion.md.

Parts (``--parts``, default all), each saved into one result file (``--out``, default
docs/results/label_recovery.json) and rendered into its own block of docs/gradient_inversion.md:

* ``single``: Wang et al.'s single-sample recovery (``recover_soft_label``) on per-sample head
  gradients — digits ``cnn`` / ``cnn-nobias``, untrained and trained, smoothing α ~ U(−0.1, 0.5)
  and mixup μ ~ U(0, 1) — and on synthetic heads (random W, b, non-negative features).
* ``estimate``: the same recovery from the FedAvg estimate −Δθ/(η·steps) of a real client update
  (``train_local``, SGD momentum 0.9, lr 0.05, no clipping, α = 0.1) vs batch size and local steps.
* ``federation``: the malicious-FedAvg probe in ``fedls simulate`` (one sample, one local step,
  every client probed), client clipping on (1.0) and off, several seeds.
* ``batch``: batch counts from the mean head gradient of one batch (``recover_batch_labels``).
* ``fedavg``: batch counts from a client update (``recover_update_labels``), clipping off/on.
* ``timing``: time per ``recover_update_labels`` call on a synthetic C = 10, d = 512 head.

Rates carry 95 % Wilson intervals (fedls.stats). Every random draw is seeded from the cell's
parameters, so a rerun with the same code gives the same rows. Usage:

    nice -n 5 .venv/bin/python scripts/bench_label_recovery.py --write-docs              # measure all parts
    nice -n 5 .venv/bin/python scripts/bench_label_recovery.py --parts single --write-docs
    .venv/bin/python scripts/bench_label_recovery.py --render --write-docs                # blocks from the file only
    .venv/bin/python scripts/bench_label_recovery.py --quick --out /tmp/quick.json        # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _docblocks as blocks
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from fedls.attacks.gradient import (
    BatchLabelRecovery,
    estimate_gradient,
    head_gradient,
    recover_batch_labels,
    recover_soft_label,
    recover_update_labels,
)
from fedls.data import DataOptions, load_dataset
from fedls.defenses.base import Defense, TrainingContext
from fedls.metrics.gradient_leakage import SUCCESS_TOL
from fedls.models import build_model
from fedls.run_dir import RunDirectory
from fedls.smoothing import label_smoothing_loss
from fedls.stats import wilson_interval
from fedls.threat_model import ClientRecipe
from fedls.training.local import train_local

SCRIPT = "bench_label_recovery.py"
DOC = blocks.ROOT / "docs" / "gradient_inversion.md"
DEFAULT_OUT = blocks.RESULTS / "label_recovery.json"
PARTS = ("single", "estimate", "federation", "batch", "fedavg", "timing")
C = 10
TRAINED_STEPS = 100
Row = dict[str, Any]


def cell_seed(*parts: object) -> int:
    """A seed from a cell's parameters that is the same in every process (``hash`` of a str is not)."""
    return zlib.crc32(repr(parts).encode())


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a rate (no trials: the whole range)."""
    return wilson_interval(successes, n) if n else (0.0, 1.0)


def rate(successes: int, n: int) -> str:
    lo, hi = wilson(successes, n)
    return f"{successes}/{n} = {successes / n if n else 0:.2f} [{lo:.2f}, {hi:.2f}]"


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    train = load_dataset("digits", DataOptions()).train
    images = torch.stack([train[i][0] for i in range(len(train))])
    labels = torch.tensor([int(train[i][1]) for i in range(len(train))])
    return images, labels


def make_model(name: str, trained: bool, images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    """Torch seed 1; "trained" = 100 SGD steps (lr 0.1, momentum 0.9, batch 32, α = 0.1)."""
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


# --- single-sample recovery ---------------------------------------------------------------------


def soft_targets(kind: str, labels: torch.Tensor, rng: np.random.Generator, present: int = C
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft targets over C classes for samples with ``labels``: smoothing with α ~ U(−0.1, 0.5), or
    mixup of the label with a different class among the first ``present`` (those with data),
    μ ~ U(0, 1), half of them smoothed on top with α ~ U(0, 0.2).
    Returns (targets, the second class, μ) — the last two are unused for smoothing."""
    n = len(labels)
    first = F.one_hot(labels, C).double()
    if kind == "smoothing":
        alpha = torch.as_tensor(rng.uniform(-0.1, 0.5, n))[:, None]
        return (1 - alpha) * first + alpha / C, labels, torch.ones(n)
    second = (labels + torch.as_tensor(rng.integers(1, present, n))) % present
    mu = torch.as_tensor(rng.uniform(0, 1, n))[:, None]
    alpha = torch.as_tensor(np.where(np.arange(n) % 2 == 0, 0.0, rng.uniform(0, 0.2, n)))[:, None]
    mixed = mu * first + (1 - mu) * F.one_hot(second, C).double()
    return (1 - alpha) * mixed + alpha / C, second, mu[:, 0].float()


def score_single(kind: str, targets: torch.Tensor, recover: Callable[[int], Any], n: int) -> dict[str, Any]:
    """Recover all ``n`` labels; exact = max |ŷ − y| < SUCCESS_TOL."""
    exact = claimed = claimed_right = 0
    alpha_err: list[float] = []
    for i in range(n):
        result = recover(i)
        error = float(np.abs(result.label - targets[i].numpy()).max())
        exact += error < SUCCESS_TOL
        claimed += result.success
        claimed_right += result.success and error < SUCCESS_TOL
        if kind == "smoothing":
            alpha_err.append(abs(result.alpha - C * float(targets[i].min())))
    return {"trials": n, "exact": exact, "claimed": claimed, "claimed_right": claimed_right,
            "alpha_err_max": max(alpha_err) if alpha_err else None}


def bench_single(images: torch.Tensor, labels: torch.Tensor, trials: int) -> list[Row]:
    rows: list[Row] = []
    for name in ("cnn", "cnn-nobias"):
        for trained in (False, True):
            model = make_model(name, trained, images, labels).eval()
            weight = model.head.weight.detach()
            bias = model.head.bias.detach() if model.head.bias is not None else None
            for kind in ("smoothing", "mixup"):
                rng = np.random.default_rng(cell_seed("single", name, trained, kind))
                first = torch.as_tensor(rng.integers(0, len(images), trials))
                targets, second_class, mu = soft_targets(kind, labels[first], rng, int(labels.max()) + 1)
                x = images[first]
                if kind == "mixup":  # mix with an image of the second class
                    pool = [torch.nonzero(labels == c)[:, 0] for c in range(C)]
                    other = torch.stack([pool[int(c)][int(rng.integers(len(pool[int(c)])))] for c in second_class])
                    x = mu[:, None, None, None] * x + (1 - mu)[:, None, None, None] * images[other]
                with torch.no_grad():  # closed-form per-sample head gradients (p − y)xᵀ and p − y, float32
                    feats = model.features(x)
                    g = torch.softmax(model.head(feats), -1) - targets.float()
                gw = torch.einsum("nc,nd->ncd", g, feats)

                def recover(i: int, gw: torch.Tensor = gw, g: torch.Tensor = g, weight: torch.Tensor = weight,
                            bias: torch.Tensor | None = bias, kind: str = kind) -> Any:
                    return recover_soft_label(gw[i], weight, g[i] if bias is not None else None, bias, augmentation=kind)

                rows.append({"model": name, "trained": trained, "kind": kind, **score_single(kind, targets, recover, trials)})
                print(json.dumps(rows[-1]), flush=True)
    for with_bias in (True, False):
        for kind in ("smoothing", "mixup"):
            rng = np.random.default_rng(cell_seed("synthetic", with_bias, kind))
            d = 64
            weight = torch.as_tensor(rng.normal(0, d**-0.5, (C, d)), dtype=torch.float32)
            bias = torch.as_tensor(rng.normal(0, 0.1, C), dtype=torch.float32) if with_bias else None
            feats = torch.relu(torch.as_tensor(rng.normal(0, 1, (trials, d)), dtype=torch.float32))
            targets, _, _ = soft_targets(kind, torch.as_tensor(rng.integers(0, C, trials)), rng)
            logits = feats @ weight.T + (bias if bias is not None else 0)
            g = torch.softmax(logits, -1) - targets.float()
            gw = torch.einsum("nc,nd->ncd", g, feats)

            def recover_synthetic(i: int, gw: torch.Tensor = gw, g: torch.Tensor = g, weight: torch.Tensor = weight,
                                  bias: torch.Tensor | None = bias, kind: str = kind) -> Any:
                return recover_soft_label(gw[i], weight, g[i] if bias is not None else None, bias, augmentation=kind)

            model_name = f"synthetic, d = {d}" + ("" if with_bias else ", no bias")
            rows.append({"model": model_name, "trained": None, "kind": kind,
                         **score_single(kind, targets, recover_synthetic, trials)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown_single(rows: list[Row]) -> str:
    out = ["| head | trained | soft label | exact within 1e-3 (95 % CI) | claimed: right / claimed | max \\|α̂ − α\\| |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        trained = "–" if r["trained"] is None else ("yes" if r["trained"] else "no")
        alpha = "–" if r["alpha_err_max"] is None else f"{r['alpha_err_max']:.1e}"
        out.append(f"| {r['model']} | {trained} | {r['kind']} | {rate(r['exact'], r['trials'])} | "
                   f"{r['claimed_right']} / {r['claimed']} | {alpha} |")
    return "\n".join(out)


# --- single-label recovery from the FedAvg estimate ---------------------------------------------------


def client_update(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int, alpha: float, lr: float,
                  clip: float, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """One epoch of ``train_local`` (SGD momentum 0.9) from ``model``'s weights: (before, after, steps)."""
    before = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    ctx = TrainingContext(server_round=1, client_id=0, num_samples=len(labels), batch_size=batch, local_epochs=1, lr=lr,
                          device=torch.device("cpu"))
    result = train_local(model, TensorDataset(images, labels), alpha, ctx, Defense(), torch.Generator().manual_seed(seed),
                         max_grad_norm=clip)
    after = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return before, after, result.steps


def bench_estimate(images: torch.Tensor, labels: torch.Tensor, trials: int, batches: tuple[int, ...],
                   steps_list: tuple[int, ...], alpha: float = 0.1, lr: float = 0.05) -> list[Row]:
    rows: list[Row] = []
    start = make_model("cnn", False, images, labels).state_dict()
    for batch in batches:
        for steps in steps_list:
            rng = np.random.default_rng(cell_seed("estimate", batch, steps))
            errors: list[float] = []
            exact = top1_in_batch = 0
            for trial in range(trials):
                idx = torch.as_tensor(rng.choice(len(images), batch * steps, replace=False))
                model = build_model("cnn", (1, 8, 8), C)
                model.load_state_dict(start)
                before, after, done = client_update(model, images[idx], labels[idx], batch, alpha, lr, 0.0, trial)
                head = head_gradient(before, estimate_gradient(before, after, lr, done), ("head.weight", "head.bias"))
                result = recover_soft_label(head.weight_grad, head.weight, head.bias_grad, head.bias)
                target = F.one_hot(labels[idx], C).double().mean(0).numpy() * (1 - alpha) + alpha / C
                error = float(np.abs(result.label - target).max())
                errors.append(error)
                exact += error < SUCCESS_TOL
                top1_in_batch += int(np.argmax(result.label)) in set(labels[idx].tolist())
            rows.append({"batch": batch, "steps": steps, "alpha": alpha, "lr": lr, "trials": trials, "exact": exact,
                         "median_max_error": statistics.median(errors), "top1_in_batch": top1_in_batch})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown_estimate(rows: list[Row]) -> str:
    steps = sorted({r["steps"] for r in rows})
    out = ["| batch \\ local steps | " + " | ".join(map(str, steps)) + " |", "|---|" + "---|" * len(steps)]
    for batch in sorted({r["batch"] for r in rows}):
        cells = []
        for s in steps:
            r = next(r for r in rows if r["batch"] == batch and r["steps"] == s)
            lo, hi = wilson(r["exact"], r["trials"])
            cells.append(f"{r['exact'] / r['trials']:.2f} [{lo:.2f}, {hi:.2f}] ({r['median_max_error']:.2g})")
        out.append(f"| {batch} | " + " | ".join(cells) + " |")
    top1 = sum(r["top1_in_batch"] for r in rows)
    total = sum(r["trials"] for r in rows)
    out += ["", f"Top-1 of ŷ among the client's labels: {rate(top1, total)} over all cells."]
    return "\n".join(out)


# --- the probe in the federation ------------------------------------------------------------------


FEDERATION = {"clients": 3, "rounds": 3, "local_epochs": 1, "alpha": 0.1}


def bench_federation(seeds: list[int], clips: tuple[float, ...] = (1.0, 0.0)) -> list[Row]:
    """``fedls simulate`` with a malicious-FedAvg probe of every client in every round; one row per round."""
    fedls = shutil.which("fedls", path=str(Path(sys.executable).parent)) or shutil.which("fedls")
    if fedls is None:
        raise SystemExit("the fedls command is not installed next to this Python")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-label-federation-") as tmp:
        for clip in clips:
            for seed in seeds:
                name = f"clip{clip:g}-s{seed}"
                command = [fedls, "simulate", "--dataset", "digits", "--model", "cnn", "--clients", str(FEDERATION["clients"]),
                           "--rounds", str(FEDERATION["rounds"]), "--local-epochs", str(FEDERATION["local_epochs"]),
                           "--alpha", str(FEDERATION["alpha"]), "--max-grad-norm", f"{clip:g}", "--attacks", "gradient",
                           "--threat", "malicious-fedavg", "--attack-clients", str(FEDERATION["clients"]), "--seed", str(seed),
                           "--device", "cpu", "--run-dir", tmp, "--name", name]
                done = subprocess.run(command, capture_output=True, text=True, cwd=blocks.ROOT)
                if done.returncode != 0:
                    raise SystemExit(f"fedls simulate failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
                run = RunDirectory.open(Path(tmp) / name)
                summary = run.summary()
                if summary is None:
                    raise SystemExit(f"{name}: the run wrote no readable summary.json")
                for record in run.metrics():
                    if "leakage/gradient/probe_label_success" not in record:
                        continue
                    probes = int(record["clients/num-clients"])
                    if record["clients/local_steps"] != 1 or record["clients/num-examples"] != probes:
                        raise SystemExit(f"{name} round {record['round']}: the probe was not one sample, one step: {record}")
                    rows.append({
                        "clip": clip, "seed": seed, "round": record["round"], "probes": probes,
                        "successes": round(record["leakage/gradient/probe_label_success"] * probes),
                        "top1": round(record["diagnostics/gradient/probe_label_top1"] * probes),
                        "mean_max_error": record["diagnostics/gradient/probe_label_max_error"],
                        "run_fedls_version": summary["fedls_version"], "run_git_commit": summary["git_commit"],
                    })
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def _small(value: float) -> str:
    """0.57, or 5.1e-08 for values that two decimals would show as 0."""
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1e}"


def markdown_federation(rows: list[Row]) -> str:
    out = ["| client clipping | label success, probes (95 % CI) | top-1 right | mean max \\|ŷ − ȳ\\| per round (min–max) |",
           "|---|---|---|---|"]
    for clip in sorted({r["clip"] for r in rows}, reverse=True):
        mine = [r for r in rows if r["clip"] == clip]
        n = sum(r["probes"] for r in mine)
        errors = [r["mean_max_error"] for r in mine]
        setting = f"`--max-grad-norm {clip:g}`" + (" (default)" if clip == 1.0 else " (off)" if clip == 0 else "")
        out.append(f"| {setting} | {rate(sum(r['successes'] for r in mine), n)} | {sum(r['top1'] for r in mine)}/{n} | "
                   f"{_small(min(errors))}–{_small(max(errors))} |")
    made = sorted({f"fedls {r['run_fedls_version']} at commit `{r['run_git_commit']}`" for r in rows})
    out += ["", f"The runs' own `summary.json` name the code that ran them: {'; '.join(made)}."]
    return "\n".join(out)


# --- batch counts ------------------------------------------------------------------------------------


class Tally:
    """One cell's trials, scored against the batch's true labels. (A plain class: the tests load
    this script with importlib, without registering it in sys.modules, which dataclasses need.)"""

    def __init__(self) -> None:
        self.exact: list[bool] = []
        self.flagged: list[bool] = []  # claimed and right
        self.claimed: list[bool] = []
        self.alpha_err: list[float] = []
        self.count_err: list[float] = []
        self.seconds: list[float] = []

    def add(self, result: BatchLabelRecovery, labels: torch.Tensor, alpha: float) -> None:
        truth = np.bincount(labels.numpy(), minlength=C)
        ok = bool(np.array_equal(result.counts, truth))
        self.exact.append(ok)
        self.claimed.append(result.success)
        self.flagged.append(result.success and ok)
        if result.alpha_identifiable:
            self.alpha_err.append(abs(result.alpha - alpha))
        self.count_err.append(float(np.abs(result.counts - truth).mean()))
        self.seconds.append(result.seconds)

    def row(self, kind: str, config: Row) -> Row:
        n = len(self.exact)
        lo, hi = wilson(sum(self.exact), n)
        errors = self.alpha_err
        return {
            "kind": kind, **config, "trials": n,
            "exact_rate": sum(self.exact) / n, "exact_lo": lo, "exact_hi": hi,
            "claimed_rate": sum(self.claimed) / n,
            "claimed_and_right": sum(self.flagged), "claimed_total": sum(self.claimed),
            "alpha_identified": len(errors),
            "alpha_err_median": float(np.median(errors)) if errors else None,
            "alpha_err_p95": float(np.percentile(errors, 95)) if errors else None,
            "count_mae": float(np.mean(self.count_err)),
            "ms_median": 1000 * float(np.median(self.seconds)),
        }


def bench_batch(images: torch.Tensor, labels: torch.Tensor, trials: int, batches: tuple[int, ...],
                alphas: tuple[float, ...], models: tuple[str, ...]) -> list[Row]:
    rows = []
    for name in models:
        for trained in (False, True):
            model = make_model(name, trained, images, labels)
            for batch in batches:
                for alpha in alphas:
                    rng = np.random.default_rng(cell_seed(name, trained, batch, alpha))
                    tally = Tally()
                    for _ in range(trials):
                        idx = torch.as_tensor(rng.choice(len(images), batch, replace=False))
                        model.zero_grad()
                        label_smoothing_loss(model(images[idx]), labels[idx], alpha).backward()
                        head = model.head
                        kwargs = {"bias_grad": head.bias.grad, "bias": head.bias} if head.bias is not None else {}
                        result = recover_batch_labels(head.weight.grad, head.weight, batch_size=batch, **kwargs)
                        tally.add(result, labels[idx], alpha)
                    rows.append(tally.row("batch", {"model": name, "trained": trained, "batch": batch, "alpha": alpha}))
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_fedavg(images: torch.Tensor, labels: torch.Tensor, trials: int, batches: tuple[int, ...], steps_list: tuple[int, ...],
                 alphas: tuple[float, ...]) -> list[Row]:
    rows = []
    for trained in (False, True):
        global_model = make_model("cnn", trained, images, labels)
        for clip in (0.0, 1.0):
            for batch in batches:
                for steps in steps_list:
                    for alpha in alphas:
                        n = batch * steps
                        if n > len(images):
                            continue
                        rng = np.random.default_rng(cell_seed(trained, clip, batch, steps, alpha))
                        recipe = ClientRecipe(lr=0.05, batch_size=batch, local_epochs=1, max_grad_norm=clip, alpha=alpha)
                        tally = Tally()
                        for trial in range(trials):
                            idx = torch.as_tensor(rng.choice(len(images), n, replace=False))
                            model = build_model("cnn", (1, 8, 8), C)
                            model.load_state_dict(global_model.state_dict())
                            start, after, done = client_update(model, images[idx], labels[idx], batch, alpha, recipe.lr, clip,
                                                               trial)
                            rec = recover_update_labels(start, after, recipe, num_examples=n, local_steps=done,
                                                        head_names=("head.weight", "head.bias"))
                            tally.add(rec, labels[idx], alpha)
                        rows.append(tally.row("fedavg", {"model": "cnn", "trained": trained, "clip": clip, "batch": batch,
                                                         "steps": steps, "alpha": alpha}))
                        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_timing(repeats: int) -> list[Row]:
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


def markdown_batch(rows: list[Row]) -> str:
    out = ["| model | trained | B | α | exact counts (95 % CI) | claimed (right/claimed) | median \\|α̂−α\\| | count MAE | ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['model']} | {'yes' if r['trained'] else 'no'} | {r['batch']} | {r['alpha']:+.2f} | "
            f"{r['exact_rate']:.2f} ({r['exact_lo']:.2f}–{r['exact_hi']:.2f}) | {r['claimed_and_right']}/{r['claimed_total']} | "
            f"{_fmt(r['alpha_err_median'], 4)} | {r['count_mae']:.2f} | {r['ms_median']:.1f} |"
        )
    return "\n".join(out)


def markdown_fedavg(rows: list[Row]) -> str:
    out = ["| trained | clip | batch | local steps | α | exact counts (95 % CI) | claimed (right/claimed) | count MAE | "
           "median \\|α̂−α\\| (identified) | ms |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {'yes' if r['trained'] else 'no'} | {r['clip']:g} | {r['batch']} | {r['steps']} | {r['alpha']:+.2f} | "
            f"{r['exact_rate']:.2f} ({r['exact_lo']:.2f}–{r['exact_hi']:.2f}) | {r['claimed_and_right']}/{r['claimed_total']} | "
            f"{r['count_mae']:.2f} | {_fmt(r['alpha_err_median'], 4)} ({r['alpha_identified']}/{r['trials']}) | "
            f"{r['ms_median']:.1f} |"
        )
    return "\n".join(out)


def markdown_timing(rows: list[Row]) -> str:
    out = ["| C | d | clipping | repeats | median ms | max ms |", "|---|---|---|---|---|---|"]
    out += [f"| {r['classes']} | {r['features']} | {r['clip']:g} | {r['repeats']} | {r['ms_median']:.1f} | {r['ms_max']:.1f} |"
            for r in rows]
    return "\n".join(out)


# --- blocks ----------------------------------------------------------------------------------------


def intro(part: str, meta: dict[str, Any]) -> str:
    """What was measured, with its budget, from the part's own metadata."""
    if part == "single":
        return (f"Single-sample head gradients, {meta['trials']} per row: digits (C = 10), per-sample gradients "
                "(p − y)xᵀ and p − y in float32 (the closed form that tests/test_gradient_label_recovery.py "
                f"checks against autograd); \"trained\" = {TRAINED_STEPS} SGD steps (lr 0.1, momentum 0.9, α = 0.1); "
                "smoothing α ~ U(−0.1, 0.5), mixup μ ~ U(0, 1) of two different classes (half also smoothed, "
                "α ~ U(0, 0.2)). Synthetic heads: W ~ N(0, 1/d), b ~ N(0, 0.1²), features max(0, N(0, 1)). "
                "Exact = max |ŷ − y| < 1e-3; \"claimed\" counts the attacker's own `success` flag. "
                "Draws seeded per row; 95 % Wilson intervals.")
    if part == "estimate":
        return (f"Label from the FedAvg estimate −Δθ/(η·steps): untrained `cnn`, α = {meta['alpha']:g}, one epoch of "
                f"`train_local` (SGD momentum 0.9, lr {meta['lr']:g}, no clipping) over `steps × batch` digits, "
                f"{meta['trials']} client updates per cell. Cell: success rate [95 % Wilson interval] "
                "(median max |ŷ − ȳ|); success = max |ŷ − ȳ| < 1e-3 against the mean soft target ȳ of the client's "
                "samples. Draws seeded per cell.")
    if part == "federation":
        f = meta["federation"]
        return (f"`fedls simulate --threat malicious-fedavg`: digits, `cnn`, {f['clients']} clients × {f['rounds']} rounds, "
                f"every client probed every round (one sample, one local step: `--local-epochs {f['local_epochs']}`), "
                f"α = {f['alpha']:g}, seed{'s' if len(meta['seeds']) > 1 else ''} {', '.join(map(str, meta['seeds']))}: "
                f"{len(meta['seeds']) * f['clients'] * f['rounds']} probes per setting. "
                "Success = max |ŷ − ȳ| < 1e-3 (fedls' probe scorer); 95 % Wilson interval over probes "
                "(probes of one run share the global model, so the interval is optimistic).")
    if part == "batch":
        return (f"Batch rows: {meta['trials']} batches per cell, mean-reduced float32 gradients from autograd; "
                f"\"trained\" = {TRAINED_STEPS} SGD steps (lr 0.1, momentum 0.9, α = 0.1). 95 % Wilson intervals; \"claimed\" "
                "counts `success=True`, \"right\" those whose counts were exact. Draws seeded per cell.")
    if part == "fedavg":
        return (f"FedAvg rows: {meta['trials']} client updates per cell from `train_local` (SGD momentum 0.9, lr 0.05, one "
                "epoch of `steps × batch` samples), counts over the client's data; clip = `max_grad_norm`. 95 % Wilson "
                "intervals. Draws seeded per cell.")
    return (f"Time per `recover_update_labels` call on a synthetic head (C = 10, d = 512, an update of 10 steps), "
            f"{meta['repeats']} calls per row, one torch thread.")


RENDER = {"single": markdown_single, "estimate": markdown_estimate, "federation": markdown_federation,
          "batch": markdown_batch, "fedavg": markdown_fedavg, "timing": markdown_timing}


def render(part: str, results: dict[str, Any], out: Path) -> str:
    entry = results["parts"][part]
    command = ".venv/bin/python scripts/bench_label_recovery.py --render"
    if out.resolve() != DEFAULT_OUT.resolve():
        command += f" --out {blocks.shown_path(out)}"
    return "\n\n".join([intro(part, entry["meta"]), RENDER[part](entry["rows"]),
                        blocks.stamp(entry["meta"], out, command + " --write-docs")])


def measure(part: str, args: argparse.Namespace, digits: tuple[torch.Tensor, torch.Tensor]) -> tuple[list[Row], dict[str, Any]]:
    quick = args.quick
    if part == "single":
        trials = 20 if quick else args.single_trials
        return bench_single(*digits, trials), {"trials": trials}
    if part == "estimate":
        trials = 3 if quick else args.estimate_trials
        sizes = (1, 4) if quick else (1, 2, 4, 8)
        return bench_estimate(*digits, trials, sizes, sizes), {"trials": trials, "alpha": 0.1, "lr": 0.05}
    if part == "federation":
        seeds = [0] if quick else [int(s) for s in args.federation_seeds.split(",")]
        return bench_federation(seeds), {"seeds": seeds, "federation": FEDERATION}
    if part == "batch":
        if quick:
            return bench_batch(*digits, 5, (4, 64), (-0.1, 0.3), ("cnn",)), {"trials": 5}
        return (bench_batch(*digits, args.trials, (1, 4, 16, 64), (-0.1, 0.0, 0.1, 0.3), ("cnn", "cnn-nobias")),
                {"trials": args.trials})
    if part == "fedavg":
        if quick:
            return bench_fedavg(*digits, 3, (16,), (1, 5), (0.1,)), {"trials": 3}
        return (bench_fedavg(*digits, args.fedavg_trials, (4, 16), (1, 2, 5, 10), (-0.1, 0.1, 0.3)),
                {"trials": args.fedavg_trials})
    repeats = 5 if quick else 20
    return bench_timing(repeats), {"repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)} [default: all]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="result file; measured parts replace theirs, the others are kept [default: %(default)s]")
    parser.add_argument("--single-trials", type=int, default=200, help="probes per row (single part)")
    parser.add_argument("--estimate-trials", type=int, default=20, help="client updates per cell (estimate part)")
    parser.add_argument("--federation-seeds", default="0,1,2", help="fedls simulate seeds per setting (federation part)")
    parser.add_argument("--trials", type=int, default=30, help="batches per cell (batch part)")
    parser.add_argument("--fedavg-trials", type=int, default=10, help="client updates per cell (fedavg part)")
    parser.add_argument("--quick", action="store_true", help="a small run: few trials and cells")
    parser.add_argument("--render", action="store_true", help="measure nothing: print (and with --write-docs write) the "
                                                             "blocks of the parts in --out")
    parser.add_argument("--write-docs", action="store_true", help="replace the parts' blocks in docs/gradient_inversion.md")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    results: dict[str, Any] = blocks.load_results(args.out) if args.out.is_file() or args.render else {"parts": {}}
    if not args.render:
        torch.set_num_threads(1)
        digits = load_digits()
        for part in parts:
            meta = blocks.run_meta(SCRIPT, sys.argv[1:])
            started = time.perf_counter()
            rows, extra = measure(part, args, digits)
            results["parts"][part] = {"meta": {**blocks.finish_meta(meta, time.perf_counter() - started), **extra,
                                               "torch_threads": torch.get_num_threads()}, "rows": rows}
            blocks.save_results(args.out, results)  # after each part: a later failure keeps the earlier ones
        results = blocks.load_results(args.out)  # render from the file, exactly as --render would
    for part in [p for p in PARTS if p in results["parts"] and (args.render or p in parts)]:
        body = render(part, results, args.out)
        print(body, end="\n\n")
        if args.write_docs:
            begin, end = blocks.markers(SCRIPT, part)
            changed = blocks.write_block(DOC, begin, end, body)
            print(f"{blocks.shown_path(DOC)}: block {part} {'updated' if changed else 'unchanged'}", file=sys.stderr)


if __name__ == "__main__":
    main()
