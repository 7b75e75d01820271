"""Image reconstruction from a FedAvg update: unrolled local steps vs the one-gradient estimate.

The protocol of tests/test_gradient_unrolled.py, over more seeds: an ``mlp`` on 8×8 images, one
random image with the smoothed label 7 (α = 0.1), a client update of ``--local-steps`` SGD steps
(momentum 0.9, lr ``--lr``, no clipping) from ``train_local``. Two reconstructions from the same
update, both given the true soft label and ``--recon-steps`` Adam steps without TV:

* unrolled: ``reconstruct_from_update`` simulates the client's local steps and matches Δθ;
* estimate: ``reconstruct_image`` matches the one-gradient estimate −Δθ/(η·steps).

Per seed (torch seed = model init, image and reconstruction start): PSNR and SSIM of both. The
block reports the paired difference with its 95 % t-interval, the paired t-test and the Wilcoxon
signed-rank test (fedls.stats.paired_test). Writes docs/results/unrolled_reconstruction.json and,
with --write-docs, its block in docs/gradient_inversion.md:

    nice -n 5 .venv/bin/python scripts/bench_unrolled_reconstruction.py --seeds 0-9 --write-docs
    .venv/bin/python scripts/bench_unrolled_reconstruction.py --render --write-docs   # from the file only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import _docblocks as blocks
import torch
from torch.utils.data import TensorDataset

from fedls.attacks.gradient.reconstruction import reconstruct_image
from fedls.attacks.gradient.unrolled import LocalRecipe, reconstruct_from_update
from fedls.defenses import Defense, TrainingContext
from fedls.metrics.images import image_metrics
from fedls.models import build_model
from fedls.smoothing import smoothed_targets
from fedls.stats import paired_test
from fedls.training.local import train_local

SCRIPT = "bench_unrolled_reconstruction.py"
DOC = blocks.ROOT / "docs" / "gradient_inversion.md"
DEFAULT_OUT = blocks.RESULTS / "unrolled_reconstruction.json"


def parse_seeds(text: str) -> list[int]:
    """``0-9`` or ``0,1,2``."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",")]


def measure_seed(seed: int, local_steps: int, lr: float, recon_steps: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = build_model("mlp", (1, 8, 8), 10)
    image = torch.rand(1, 1, 8, 8) * 2 - 1
    target = smoothed_targets(torch.tensor([7]), 10, 0.1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = TrainingContext(1, 0, 1, batch_size=1, local_epochs=local_steps, lr=lr, device=torch.device("cpu"))
    train_local(model, TensorDataset(image, target), 0.0, ctx, Defense(), torch.Generator().manual_seed(0), "sgd",
                max_grad_norm=0.0)
    observed = {k: v.clone() - start[k] for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    params = {n: start[n] for n, _ in model.named_parameters()}
    started = time.perf_counter()
    unrolled = reconstruct_from_update(model, params, observed, target[0], (1, 8, 8), LocalRecipe(local_steps, lr, 0.9),
                                       steps=recon_steps, tv_weight=0.0)
    unrolled_seconds = time.perf_counter() - started
    estimate = {n: -observed[n] / (lr * local_steps) for n in params}
    started = time.perf_counter()
    naive = reconstruct_image(model, estimate, target[0], (1, 8, 8), steps=recon_steps, tv_weight=0.0)
    naive_seconds = time.perf_counter() - started
    u, e = image_metrics(unrolled.image, image), image_metrics(naive.image, image)
    return {"seed": seed, "unrolled_psnr": u["psnr"], "estimate_psnr": e["psnr"], "unrolled_ssim": u["ssim"],
            "estimate_ssim": e["ssim"], "unrolled_seconds": unrolled_seconds, "estimate_seconds": naive_seconds}


def markdown(results: dict[str, Any], out: Path) -> str:
    meta, rows = results["meta"], results["rows"]
    seeds = [r["seed"] for r in rows]
    unrolled, estimate = [r["unrolled_psnr"] for r in rows], [r["estimate_psnr"] for r in rows]
    test = paired_test(unrolled, estimate)
    consecutive = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    shown_seeds = f"{seeds[0]}–{seeds[-1]}" if consecutive and len(seeds) > 2 else ", ".join(map(str, seeds))
    better = sum(u > e for u, e in zip(unrolled, estimate, strict=True))
    lines = [
        f"`mlp`, one random 8×8 image with label 7 smoothed at α = 0.1, a client update of {meta['local_steps']} SGD steps "
        f"(momentum 0.9, lr {meta['lr']:g}, no clipping, fedls' `train_local`); both reconstructions get the true soft "
        f"label and {meta['recon_steps']} Adam steps without TV. Seeds {shown_seeds} ({len(seeds)}; the seed sets "
        "the model's initialisation, the image and the reconstruction's start).",
        "",
        "| | unrolled local steps | −Δθ/(η·steps) estimate |",
        "|---|---|---|",
        f"| PSNR range (dB) | {min(unrolled):.1f}–{max(unrolled):.1f} | {min(estimate):.1f}–{max(estimate):.1f} |",
        f"| PSNR mean ± sd (dB) | {statistics.fmean(unrolled):.1f} ± {statistics.stdev(unrolled):.1f} "
        f"| {statistics.fmean(estimate):.1f} ± {statistics.stdev(estimate):.1f} |",
        f"| SSIM mean | {statistics.fmean(r['unrolled_ssim'] for r in rows):.2f} "
        f"| {statistics.fmean(r['estimate_ssim'] for r in rows):.2f} |",
        f"| time per reconstruction, median (s) | {statistics.median(r['unrolled_seconds'] for r in rows):.1f} "
        f"| {statistics.median(r['estimate_seconds'] for r in rows):.1f} |",
        "",
        f"Unrolled minus estimate, paired by seed: {test.mean_diff:+.1f} dB, 95 % t-interval "
        f"[{test.ci_low:+.1f}, {test.ci_high:+.1f}] dB; paired t-test p = {test.p_t:.1g}, Wilcoxon signed-rank "
        f"p = {test.p_wilcoxon:.1g}; unrolled higher in {better} of {len(rows)} seeds.",
        "",
        blocks.stamp(meta, out, ".venv/bin/python scripts/bench_unrolled_reconstruction.py --render --write-docs"
                     + ("" if out.resolve() == DEFAULT_OUT.resolve() else f" --out {blocks.shown_path(out)}")),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-9", help="0-9 or 0,1,2 [default: %(default)s]")
    parser.add_argument("--local-steps", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--recon-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    blocks.add_block_arguments(parser, DEFAULT_OUT, DOC)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        rows = []
        for seed in parse_seeds(args.seeds):
            rows.append(measure_seed(seed, args.local_steps, args.lr, args.recon_steps))
            print(json.dumps(rows[-1]), flush=True)
        extra = {"local_steps": args.local_steps, "lr": args.lr, "recon_steps": args.recon_steps, "torch_threads": args.threads}
        return extra, {"rows": rows}

    blocks.measure_and_render(SCRIPT, args.out, DOC, render_only=args.render, write_docs=args.write_docs,
                              measure=run, render=markdown)

if __name__ == "__main__":
    main()
