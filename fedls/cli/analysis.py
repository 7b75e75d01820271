"""`fedls toy`, `embeddings`, `robustness`, `stages`: the analysis instruments of seeds 001/004.

Each command parses flags into a config, delegates to :mod:`fedls.analysis`, writes its
outputs to a fresh ``--out`` folder and prints a summary table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedls.cli.app import app, console, guarded, setup_logging
from fedls.cli.attack_model import parse_classes
from fedls.cli.options import FiniteFloat, shown_default
from fedls.errors import ConfigError

if TYPE_CHECKING:
    import torch

Opt = typer.Option
Arg = typer.Argument
FROM_RUN = shown_default("the first run's model_attack table, else the PPA default")


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar fed by the library's ``progress(stage, done, total)`` callbacks."""
    bar = Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def _table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def _run_dirs(paths: Sequence[Path]) -> None:
    for p in paths:
        if not p.is_dir():
            raise ConfigError(f"run directory {p} does not exist; pass a folder under runs/")


@app.command()
@guarded
def toy(
    alpha: Annotated[
        Optional[list[float]],
        Opt("--alpha", "-a", help="Smoothing factor, repeatable. \\[default: 0, 0.05, -0.05]", click_type=FiniteFloat()),
    ] = None,
    # upper bounds keep a typo (10000000 seeds) from starting days of work
    num_seeds: Annotated[int, Opt("--num-seeds", min=1, max=1000, help="Number of seeds (0..N-1): data, initialisation.")] = 5,
    iterations: Annotated[
        int, Opt(min=1, max=1_000_000, help="Full-batch SGD iterations (Struppek et al. 2024, Appx. B.6: 5000).")
    ] = 5000,
    fixed_steps: Annotated[
        int, Opt(min=1, max=1_000_000, help="Steps of the attack variant without stopping rule (Fig. 8).")
    ] = 5000,
    start: Annotated[
        Optional[str], Opt(help="Attack start point 'x,y'. \\[default: green centre moved 1 toward orange: (-1.5, -1.5)]")
    ] = None,
    out: Annotated[
        Optional[Path], Opt(help="Output folder (must be new or empty). \\[default: runs/analysis/toy, suffixed if taken]")
    ] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show fedls' logs.")] = False,
) -> None:
    """The 2-D toy example (Struppek et al. 2024, §3, Fig. 1/8): attack steps and distance to the target data per α."""
    from fedls.analysis.reports import write_toy_report
    from fedls.analysis.toy import ToyConfig, run_toy
    from fedls.outputs import prepare_output_dir

    setup_logging(verbose)
    start_point = None
    if start is not None:
        try:
            sx, sy = (float(v) for v in start.split(","))
            if not (math.isfinite(sx) and math.isfinite(sy)):
                raise ValueError(start)
        except ValueError:
            raise ConfigError(f"--start {start!r} is not 'x,y' (e.g. --start=-2.5,-1.5)") from None
        start_point = (sx, sy)
    config = ToyConfig(
        alphas=tuple(alpha) if alpha else ToyConfig.alphas, seeds=tuple(range(num_seeds)),
        iterations=iterations, fixed_steps=fixed_steps, start=start_point,
    )
    target = prepare_output_dir(out, Path("runs") / "analysis" / "toy")
    console.print(f"[bold]fedls toy[/] {len(config.alphas)} α × {num_seeds} seeds, start {config.start_point} → {target}")
    with _progress() as progress:
        result = run_toy(config, progress)
    rows = write_toy_report(result, target)
    _table("toy example (mean ± std over seeds)", rows)
    console.print(f"outputs: {target}")


@app.command()
@guarded
def embeddings(
    run_dirs: Annotated[list[Path], Arg(help="Run directories with a final model.pt (e.g. one per α of a sweep).")],
    max_per_class: Annotated[int, Opt(min=1, help="Training samples per class.")] = 100,
    max_classes: Annotated[int, Opt(min=1, help="Classes shown/measured (Fig. 4 uses 100).")] = 100,
    tsne: Annotated[bool, Opt("--tsne/--no-tsne", help="Compute the t-SNE picture.")] = True,
    seed: Annotated[int, Opt(help="t-SNE seed.")] = 0,
    out: Annotated[
        Optional[Path], Opt(help="Output folder (must be new or empty). \\[default: <first run>/analysis/embeddings]")
    ] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show fedls' logs.")] = False,
) -> None:
    """Penultimate-layer geometry (Struppek et al. 2024, §4.3, Fig. 4/5): t-SNE, distance violins, TensorBoard projector."""
    from fedls.analysis.embeddings import EmbeddingConfig, analyse_embeddings
    from fedls.analysis.reports import write_embedding_report
    from fedls.analysis.runs import open_trained_run
    from fedls.outputs import prepare_output_dir

    setup_logging(verbose)
    _run_dirs(run_dirs)
    config = EmbeddingConfig(max_per_class=max_per_class, max_classes=max_classes, tsne=tsne, seed=seed)
    runs = [open_trained_run(p) for p in run_dirs]
    target = prepare_output_dir(out, run_dirs[0] / "analysis" / "embeddings")
    analyses, names = [], []
    with _progress() as progress:
        for i, run in enumerate(runs):
            progress("models", i, len(runs))
            analyses.append(
                analyse_embeddings(run.model, run.splits.train, run.splits.train_targets, config, run.label, run.config.alpha)
            )
            names.append(run.splits.class_names or [str(c) for c in range(run.splits.num_classes)])
            progress("models", i + 1, len(runs))
    rows = write_embedding_report(analyses, names, target)
    _table("embedding distances (max-scaled L2, means)", rows)
    console.print(f"outputs: {target}  (projector: tensorboard --logdir {target / 'tensorboard'})")


@app.command()
@guarded
def robustness(
    run_dir: Annotated[Path, Arg(help="Run directory with a final model.pt.")],
    reference: Annotated[
        Optional[Path], Opt(help="Hard-label (α=0) run whose model crafts the transfer attack. \\[default: train one centrally]")
    ] = None,
    epsilon: Annotated[
        float,
        Opt(click_type=FiniteFloat(min=0.0, max=2.0), help="L∞ radius in the \\[-1, 1] image range (0.25 = 32/255 in \\[0, 1])."),
    ] = 0.25,
    test_samples: Annotated[int, Opt("--test-samples", min=1, help="Test samples attacked.")] = 200,
    seed: Annotated[int, Opt(help="Seed for random starts, targets and the reference model.")] = 0,
    out: Annotated[
        Optional[Path], Opt(help="Output folder (must be new or empty). \\[default: <run>/analysis/robustness]")
    ] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show fedls' logs.")] = False,
) -> None:
    """Adversarial robustness (Struppek et al. 2024, Appx. C.8, Fu et al. (2020)): FGSM, PGD variants, margin loss, transfer."""
    from fedls.analysis.reports import write_robustness_report
    from fedls.analysis.robustness import RobustnessConfig, evaluate_robustness, train_reference
    from fedls.analysis.runs import open_trained_run
    from fedls.assembly import build_global_model
    from fedls.outputs import prepare_output_dir

    setup_logging(verbose)
    _run_dirs([run_dir] + ([reference] if reference is not None else []))
    config = RobustnessConfig(epsilon=epsilon, samples=test_samples, seed=seed)
    run = open_trained_run(run_dir)
    ref_run = open_trained_run(reference) if reference is not None else None
    target = prepare_output_dir(out, run_dir / "analysis" / "robustness")
    with _progress() as progress:
        if ref_run is not None:
            if ref_run.config.alpha != 0:
                console.print(f"[yellow]note:[/] the reference run has α={ref_run.config.alpha:g}, not a hard-label model")
            ref_model: torch.nn.Module = ref_run.model
            note = f"run {ref_run.path} (α={ref_run.config.alpha:g})"
        else:
            ref_model = train_reference(
                build_global_model(run.config.with_overrides(weights=None), run.splits), run.splits.train, config, progress
            )
            note = (
                f"trained centrally here: {run.config.model}, α=0, {config.reference_epochs} epochs on the run's training split"
            )
        console.print(f"transfer source: {note}")
        clean, rows = evaluate_robustness(run.model, ref_model, run.splits.test, run.splits.num_classes, config, progress)
    table = write_robustness_report(run.label, clean, rows, config, note, target)
    _table(f"{run.label}: clean accuracy {clean:.1%}, ε={epsilon:g}", table)
    console.print(f"transfer source: {note}\noutputs: {target}")


@app.command()
@guarded
def stages(
    run_dirs: Annotated[list[Path], Arg(help="Run directories (hard-label baseline first), same dataset.")],
    attack_steps: Annotated[Optional[int], Opt("--attack-steps", min=0, help=f"Optimisation steps (stage 2). {FROM_RUN}")] = None,
    pool_size: Annotated[Optional[int], Opt(min=1, help=f"Latents scored in stage 1. {FROM_RUN}")] = None,
    classes: Annotated[
        Optional[str], Opt(help=f"Attacked classes: all, a number (seeded random subset) or a list like 0,3,7. {FROM_RUN}")
    ] = None,
    out: Annotated[
        Optional[Path], Opt(help="Output folder (must be new or empty). \\[default: <first run>/analysis/stages]")
    ] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show fedls' logs.")] = False,
) -> None:
    """Attack-stage ablation (Struppek et al. 2024, §4.4, Appx. C.4): sampling, optimisation (gradient cosine), selection."""
    from fedls.analysis.reports import write_stages_report
    from fedls.analysis.runs import open_trained_run
    from fedls.analysis.stages import analyse_stages
    from fedls.federation.observers.model_inversion import ModelInversion, parse_model_attack
    from fedls.outputs import prepare_output_dir

    setup_logging(verbose)
    _run_dirs(run_dirs)
    if len(run_dirs) < 2:
        raise ConfigError("pass at least two run directories (hard-label baseline first)")
    runs = [open_trained_run(p) for p in run_dirs]
    options = parse_model_attack(dict(runs[0].config.model_attack), runs[0].splits.num_classes)
    chosen = {"steps": attack_steps, "pool_size": pool_size, "classes": parse_classes(classes)}
    overrides = {k: v for k, v in chosen.items() if v is not None}
    options = options.replace("model_attack", ppa=options.ppa.replace("model_attack.ppa", **overrides))
    target = prepare_output_dir(out, run_dirs[0] / "analysis" / "stages")
    with _progress() as progress:
        inversion = ModelInversion(options, runs[0].splits, runs[0].config.model, "cpu", progress=progress)
        prior = inversion.prior
        eval_model, arch = inversion.judge.model, inversion.judge.arch
        result = analyse_stages(runs, prior, eval_model, options, progress)
    tables = write_stages_report(result, target)
    for name, rows in tables.items():
        _table(f"stage: {name} (evaluation model: {arch})", rows)
    console.print(f"outputs: {target}")
