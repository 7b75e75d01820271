"""Write an analysis's numbers (JSON/CSV), pictures (PNG) and TensorBoard entries to a folder.

Each ``write_*`` returns the summary rows the CLI shows as its final table.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedls.analysis.outputs import summary_stats, write_csv, write_json

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)

PATH_POINTS = 500  # paths.csv keeps at most this many points per path (first and last always)


def _writer(out: Path) -> SummaryWriter:
    from torch.utils.tensorboard import SummaryWriter  # imported lazily (slow import)

    return SummaryWriter(log_dir=str(out / "tensorboard"))


def write_toy_report(result: Any, out: Path, figure_seed: int | None = None) -> list[dict[str, Any]]:
    """``toy.json`` (config + per-α mean/std), ``toy_runs.csv`` (per seed and α),
    ``toy_paths.csv`` (attack paths, subsampled), ``toy.png`` (Fig. 1/8 panels for one
    seed), ``toy_summary.png`` (all seeds) and TensorBoard scalars and figures."""
    from fedls.analysis import toy_plot

    config = result.models.config
    rows = result.rows()
    write_csv(out / "toy_runs.csv", rows)
    path_rows: list[dict[str, Any]] = []
    for variant, attack in (("stop", result.stopped), ("fixed", result.fixed)):
        for i, (seed, alpha) in enumerate(result.models.pairs):
            path = attack.paths[i]
            stride = max(1, -(-len(path) // PATH_POINTS))
            keep = list(range(0, len(path), stride))
            if keep[-1] != len(path) - 1:
                keep.append(len(path) - 1)
            path_rows.extend(
                {"variant": variant, "alpha": alpha, "seed": seed, "step": t, "x": float(path[t, 0]), "y": float(path[t, 1])}
                for t in keep
            )
    write_csv(out / "toy_paths.csv", path_rows)

    table = []
    per_alpha: dict[str, Any] = {}
    for alpha in config.alphas:
        sub = [r for r in rows if r["alpha"] == alpha]
        entry: dict[str, Any] = {
            "steps": summary_stats(r["steps"] for r in sub),
            "distance": summary_stats(r["distance"] for r in sub),
            "distance_reached_only": summary_stats(r["distance"] for r in sub if r["reached"]),
            "reached": sum(bool(r["reached"]) for r in sub),
            "fixed_steps_distance": summary_stats(r["fixed_steps_distance"] for r in sub),
            "train_accuracy": summary_stats(r["train_accuracy"] for r in sub),
        }
        per_alpha[f"{alpha:g}"] = entry
        table.append({
            "alpha": f"{alpha:g}",
            "steps to 95%": f"{entry['steps']['mean']:.0f} ± {entry['steps']['std']:.0f}",
            "reached": f"{entry['reached']}/{len(sub)}",
            "dist (reached)": f"{entry['distance_reached_only']['mean']:.2f} ± {entry['distance_reached_only']['std']:.2f}",
            "dist (all)": f"{entry['distance']['mean']:.2f} ± {entry['distance']['std']:.2f}",
            f"dist after {config.fixed_steps} steps":
                f"{entry['fixed_steps_distance']['mean']:.2f} ± {entry['fixed_steps_distance']['std']:.2f}",
        })
    geometry = {
        "classes": {
            i: {"center": list(c), "std": config.std, "samples": config.samples_per_class} for i, c in enumerate(config.centers)
        },
        "start_point": list(config.start_point),
        "source_class": config.source_class,
        "target_class": config.target_class,
        "training": "full batch (all points every iteration)",
    }
    write_json(out / "toy.json", {"config": dataclasses.asdict(config), "geometry": geometry, "per_alpha": per_alpha})

    seed = config.seeds[0] if figure_seed is None else figure_seed
    toy_plot.save(toy_plot.toy_figure(result, seed), out / "toy.png")
    toy_plot.save(toy_plot.summary_figure(result), out / "toy_summary.png")
    writer = _writer(out)
    for alpha in config.alphas:
        entry = per_alpha[f"{alpha:g}"]
        for key in ("steps", "distance", "fixed_steps_distance"):
            writer.add_scalar(f"toy/{key}_mean/alpha={alpha:g}", entry[key]["mean"], 0)
    writer.add_figure("toy/panels", toy_plot.toy_figure(result, seed), 0)
    writer.add_figure("toy/summary", toy_plot.summary_figure(result), 0)
    writer.close()
    return table


def write_embedding_report(analyses: Sequence[Any], class_names: Sequence[Sequence[str]], out: Path) -> list[dict[str, Any]]:
    """``embeddings.json`` (statistics per model), ``embeddings_distances.csv`` (per sample),
    ``embeddings_tsne.png``, ``embeddings_violins.png``, TensorBoard projector + scalars."""
    from fedls.analysis import embeddings_plot

    write_json(out / "embeddings.json", {a.label: {"alpha": a.alpha, **a.summary} for a in analyses})
    rows = []
    for a in analyses:
        n = len(a.labels)
        for i in range(n):
            rows.append({"model": a.label, "alpha": a.alpha, "label": int(a.labels[i]),
                         **{k: float(v[i]) for k, v in a.distances.items()}})
    write_csv(out / "embeddings_distances.csv", rows)
    if any(a.tsne is not None for a in analyses):
        embeddings_plot.save(embeddings_plot.tsne_figure(analyses), out / "embeddings_tsne.png")
    embeddings_plot.save(embeddings_plot.violin_figure(analyses), out / "embeddings_violins.png")
    writer = _writer(out)
    for step, (a, names) in enumerate(zip(analyses, class_names, strict=True)):
        embeddings_plot.add_projector(writer, a, names, global_step=step)
        for key in ("intra", "inter", "nn_intra", "nn_inter"):
            writer.add_scalar(f"embeddings/{key}_mean/{a.label}", a.summary[key]["mean"], 0)
    writer.close()
    return [
        {
            "model": a.label,
            "intra": f"{a.summary['intra']['mean']:.3f}",
            "inter": f"{a.summary['inter']['mean']:.3f}",
            "NN intra": f"{a.summary['nn_intra']['mean']:.3f}",
            "NN inter": f"{a.summary['nn_inter']['mean']:.3f}",
            "inter/intra": f"{a.summary['inter_over_intra']:.2f}",
            "NN other class": f"{a.summary['nn_other_class_fraction']:.1%}",
        }
        for a in analyses
    ]


def write_robustness_report(
    label: str, clean_accuracy: float, rows: Sequence[Any], config: Any, reference_note: str, out: Path
) -> list[dict[str, Any]]:
    """``robustness.json`` / ``robustness.csv`` (one row per attack and mode),
    ``robustness.png`` (accuracy under each attack) and TensorBoard scalars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [dataclasses.asdict(r) for r in rows]
    write_csv(out / "robustness.csv", records)
    write_json(out / "robustness.json", {
        "model": label, "clean_accuracy": clean_accuracy, "epsilon": config.epsilon, "epsilon_range": "[-1, 1] images",
        "samples": config.samples, "reference": reference_note,
        "attacks": [dataclasses.asdict(a) for a in config.attacks], "transfer_attack": dataclasses.asdict(config.transfer_spec),
        "results": records,
    })
    attacks = list(dict.fromkeys(r.attack for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.4
    for j, mode in enumerate(("untargeted", "targeted")):
        vals = [
            next(r.accuracy if mode == "untargeted" else r.success for r in rows if r.attack == a and r.mode == mode)
            for a in attacks
        ]
        ax.bar([i + (j - 0.5) * width for i in range(len(attacks))], vals, width,
               label="untargeted: accuracy under attack" if mode == "untargeted" else "targeted: success rate")
    ax.axhline(clean_accuracy, color="k", linestyle="--", linewidth=0.8, label="clean accuracy")
    ax.set_xticks(range(len(attacks)), attacks, rotation=25, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"{label}, L∞ ε={config.epsilon:g} ([-1,1] images)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=90)
    plt.close(fig)
    writer = _writer(out)
    writer.add_scalar("robustness/clean_accuracy", clean_accuracy, 0)
    for r in rows:
        writer.add_scalar(f"robustness/{r.mode}/{r.attack}/accuracy", r.accuracy, 0)
        writer.add_scalar(f"robustness/{r.mode}/{r.attack}/success", r.success, 0)
    writer.close()
    table = []
    for a in attacks:
        u = next(r for r in rows if r.attack == a and r.mode == "untargeted")
        t = next(r for r in rows if r.attack == a and r.mode == "targeted")
        table.append({"attack": a, "robust acc (untargeted)": f"{u.accuracy:.1%}", "success (untargeted)": f"{u.success:.1%}",
                      "success (targeted)": f"{t.success:.1%}"})
    return table


def write_stages_report(result: Any, out: Path) -> dict[str, list[dict[str, Any]]]:
    """``stages.json``, ``stages_{sampling,optimisation,selection}.csv``,
    ``stages_cosine.csv`` (per-step curves), ``stages_cosine.png`` (Fig. 6b) and TensorBoard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_csv(out / "stages_sampling.csv", result.sampling)
    write_csv(out / "stages_optimisation.csv", result.optimisation)
    write_csv(out / "stages_selection.csv", result.selection)
    write_csv(out / "stages_cosine.csv", [
        {"model": label, "step": t + 2, "mean": m, "std": s}
        for label, curve in result.cosine_curves.items() for t, (m, s) in enumerate(zip(curve["mean"], curve["std"], strict=True))
    ])
    write_json(
        out / "stages.json", {"sampling": result.sampling, "optimisation": result.optimisation, "selection": result.selection}
    )
    fig, ax = plt.subplots(figsize=(5, 3))
    writer = _writer(out)
    for label, curve in result.cosine_curves.items():
        steps = list(range(2, len(curve["mean"]) + 2))
        mean = curve["mean"]
        lo = [m - s for m, s in zip(mean, curve["std"], strict=True)]
        hi = [m + s for m, s in zip(mean, curve["std"], strict=True)]
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, lo, hi, alpha=0.2)
        for t, m in zip(steps, mean, strict=True):
            writer.add_scalar(f"stages/grad_cosine/{label}", m, t)
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("cos(∇L_t, ∇L_t-1)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "stages_cosine.png", dpi=90)
    plt.close(fig)
    writer.close()

    def fmt(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]

    return {"sampling": fmt(result.sampling), "optimisation": fmt(result.optimisation), "selection": fmt(result.selection)}
