"""Wall time of the model-inversion attack per target class with the default budget.

Trains (or loads from the cache) the digits prior, then a small CNN centrally on the bundled
digits (α = 0.1, a few epochs), and times ``run_ppa`` with the default :class:`PPAConfig`.
Prior and evaluation-model training are excluded (they are cached and paid once).

    .venv/bin/python scripts/bench_model_inversion.py --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from fedls.attacks.model.config import ModelAttackOptions, PPAConfig
from fedls.attacks.model.evaluation_model import dataset_tensors, train_classifier
from fedls.attacks.model.ppa import run_ppa
from fedls.attacks.model.prior import load_or_train_prior
from fedls.data import load_dataset
from fedls.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("digits")
    options = ModelAttackOptions(cache_dir=args.cache_dir)
    started = time.perf_counter()
    prior = load_or_train_prior("digits", splits.public, splits.image_shape, options.prior, options.cache_dir)
    prior_seconds = time.perf_counter() - started
    x, y = dataset_tensors(splits.train)
    target = train_classifier(build_model("cnn", splits.image_shape, splits.num_classes), x, y, 10, 32, 1e-3, 0)
    config = PPAConfig()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = run_ppa(target, prior, splits.num_classes, config)
        times.append(time.perf_counter() - started)
    classes = len(result.classes)
    print(json.dumps({
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "classes": classes,
        "config": {k: getattr(config, k) for k in ("pool_size", "candidates_per_class", "samples_per_class", "steps", "selection_augmentations")},
        "prior_load_or_train_seconds": round(prior_seconds, 2),
        "attack_seconds": [round(t, 2) for t in times],
        "seconds_per_class_median": round(statistics.median(times) / classes, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
