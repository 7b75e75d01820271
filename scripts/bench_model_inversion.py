"""Wall time of one model-inversion round at the default budget, prior and judge cached.

One round = what the server's observer does at an attacked round: PPA (sampling,
optimisation, selection) on the global model, the target's private-test accuracy, and the
scorer (judge Acc@1 with interval and prior baseline, δ_eval, ξ with the default surrogates).
The target is a small CNN trained centrally on the private digits (0–4, α = 0.1). Prior and
judge training are paid once and excluded (they are cached); the first, untimed repeat warms
them up. Reports wall and CPU seconds (the machine may be shared: CPU time / threads is
what an idle machine would need at least) and writes the attack-vs-real figure.

``--controls`` also attacks the no-false-positive controls of tests/test_instrument_controls.py
at the default budget (untrained, shuffled-label and public-data targets) and prints their scores.

    .venv/bin/python scripts/bench_model_inversion.py --threads 1 --repeats 5 --controls --figure docs/img/mi_attack_vs_real.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from fedls.data import dataset_tensors, load_dataset
from fedls.federation.observers.model_inversion import ModelInversion, parse_model_attack, round_title
from fedls.models import build_model
from fedls.smoothing import label_smoothing_loss


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--figure", type=Path, default=None, help="write the attack-vs-real figure of the last repeat here")
    parser.add_argument(
        "--controls", action="store_true", help="also score the untrained, shuffled-label and public-data targets"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("digits")
    options = parse_model_attack({"cache_dir": args.cache_dir}, splits.num_classes)
    inversion = ModelInversion(options, splits, "cnn")
    started = time.perf_counter()
    _ = inversion.prior, inversion.judge, inversion.prior_quality()
    setup_seconds = time.perf_counter() - started
    x, y = dataset_tensors(splits.train)
    target = train_target(x, y, splits.num_classes, 0.1, 15, 0)
    inversion.run(target, seed=0)  # warm-up (allocations, first-touch of caches); not timed
    wall, cpu, metrics = [], [], {}
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result, metrics = inversion.run(target, seed=0)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    if args.figure is not None:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        inversion.figure(result, round_title("digits 0–4, central CNN α = 0.1", metrics)).savefig(args.figure)
    controls: dict[str, dict[str, float]] = {}
    if args.controls:
        torch.manual_seed(0)
        shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
        xp, yp = dataset_tensors(splits.public)
        for name, model in (
            ("trained", target),
            ("untrained", build_model("cnn", splits.image_shape, splits.num_classes)),
            ("shuffled_labels", train_target(x, shuffled, splits.num_classes, 0.0, 15, 0)),
            ("public_data_only", train_target(xp, yp - splits.num_classes, splits.num_classes, 0.0, 15, 0)),
        ):
            _, m = inversion.run(model, seed=0, extraction=False)
            controls[name] = {
                k: round(m[k], 3) for k in ("target_accuracy", "acc1", "acc1_low", "acc1_high", "baseline_acc1", "lift")
            }
    print(json.dumps({
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "classes": len(result.classes),
        "budget": options.ppa.model_dump(include={"pool_size", "candidates_per_class", "samples_per_class", "steps",
                                                  "selection_augmentations"}),
        "prior_and_judge_setup_seconds": round(setup_seconds, 2),
        "round_wall_seconds": [round(t, 2) for t in wall],
        "round_cpu_seconds": [round(t, 2) for t in cpu],
        "round_wall_median": round(statistics.median(wall), 2),
        "round_cpu_median_per_thread": round(statistics.median(cpu) / args.threads, 2),
        "attack_seconds_last": round(metrics["attack_seconds"], 2),
        "acc1": metrics["acc1"], "baseline_acc1": metrics["baseline_acc1"], "judge_accuracy": metrics["judge_accuracy"],
        "controls": controls,
    }, indent=2))


if __name__ == "__main__":
    main()
