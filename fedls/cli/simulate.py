"""`fedls simulate`: parse flags (over an optional TOML file) and run one federated experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fedls.cli.app import app, console, err_console, guarded, setup_logging
from fedls.cli.attack_model import parse_classes
from fedls.config import RunConfig, parse_assignment

Opt = typer.Option


def build_config(config_file: Path | None, **flags: Any) -> RunConfig:
    """TOML file (if any) first, then every flag the user actually passed."""
    base = RunConfig.from_toml(config_file) if config_file is not None else RunConfig()
    sections = {key: flags.pop(key) for key in ("central_dp", "gradient_attack", "model_attack") if key in flags}
    return base.with_overrides(**flags).merged_sections(**sections).validate()


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@app.command()
@guarded
def simulate(
    clients: Annotated[Optional[int], Opt(help="Number of simulated clients (Flower supernodes). [default: 10]")] = None,
    alpha: Annotated[Optional[float], Opt(help="Label-smoothing factor α ≤ 1; negative α penalises wrong-class confidence. [default: 0]")] = None,
    rounds: Annotated[Optional[int], Opt(help="Federated rounds. [default: 20]")] = None,
    local_epochs: Annotated[Optional[int], Opt(help="Local epochs per round on each client. [default: 2]")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Client mini-batch size. [default: 16]")] = None,
    lr: Annotated[Optional[float], Opt(help="Client learning rate. [default: 0.05]")] = None,
    optimizer: Annotated[Optional[str], Opt(help="Client optimizer: sgd (momentum 0.9) or adam. [default: sgd]")] = None,
    weight_decay: Annotated[Optional[float], Opt(help="Client weight decay. [default: 0]")] = None,
    max_grad_norm: Annotated[Optional[float], Opt(help="Client gradient-norm clipping, stabilises negative α; 0 = off. [default: 1.0]")] = None,
    warmup_rounds: Annotated[Optional[int], Opt(help="Negative α only: rounds without smoothing first (seed 001 §4.1). [default: 3]")] = None,
    ramp_rounds: Annotated[Optional[int], Opt(help="Negative α only: rounds of linear ramp to α after the warm-up. [default: 3]")] = None,
    dataset: Annotated[Optional[str], Opt(help="digits (bundled), fashion-mnist, mnist, cifar10, cifar100, imagefolder, celeba. [default: digits]")] = None,
    data_dir: Annotated[Optional[str], Opt(help="Folder with the dataset's files (not needed for digits).")] = None,
    image_size: Annotated[Optional[int], Opt(help="Resize images to this many pixels (default: the dataset's own).")] = None,
    num_classes: Annotated[Optional[int], Opt(help="Identity datasets: keep the N identities with most images; the rest become the server's public data.")] = None,
    private_cap: Annotated[Optional[int], Opt(help="Cap the private training data at N images per class (Struppek et al. 2024, Appx. C.3).")] = None,
    partition: Annotated[Optional[str], Opt(help="How clients' shards are drawn: iid, dirichlet, by-class. [default: iid]")] = None,
    dirichlet_beta: Annotated[Optional[float], Opt(help="Dirichlet concentration β; smaller → more label skew. [default: 0.5]")] = None,
    model: Annotated[Optional[str], Opt(help="cnn, cnn-nobias, cnn-batchnorm, mlp, resnet18, resnet50, resnet152, facenet. [default: cnn]")] = None,
    weights: Annotated[Optional[str], Opt(help="Local state_dict file to initialise the model from.")] = None,
    defense: Annotated[Optional[str], Opt(help="Client training defense: none, mid, bido, dp (options: docs/defenses.md). [default: none]")] = None,
    defense_option: Annotated[Optional[list[str]], Opt("--defense-option", help="Defense option KEY=VALUE, repeatable, e.g. --defense-option beta=0.01 or epsilon=8.")] = None,
    central_dp_noise: Annotated[Optional[float], Opt(help="Flower's central DP on the server: noise multiplier (with --central-dp-clip). Protects the released model, NOT the clients from the curious server.")] = None,
    central_dp_clip: Annotated[Optional[float], Opt(help="Central DP: clipping norm of each client update. [default: 1.0 when central DP is on]")] = None,
    fraction_train: Annotated[Optional[float], Opt(help="Fraction of clients sampled each round. [default: 1.0]")] = None,
    seed: Annotated[Optional[int], Opt(help="Seed for data split, partition, init and training. [default: 0]")] = None,
    device: Annotated[Optional[str], Opt(help="auto (GPU when present), cpu or cuda. [default: auto]")] = None,
    client_cpus: Annotated[Optional[float], Opt(help="CPU cores per client (Ray resources). [default: 1]")] = None,
    client_gpus: Annotated[Optional[float], Opt(help="GPUs per client; fractional values share a GPU. [default: shared evenly on CUDA, 0 on CPU]")] = None,
    round_timeout: Annotated[Optional[float], Opt(help="Seconds the server waits for a round's replies. [default: 600]")] = None,
    attacks: Annotated[Optional[str], Opt(help="Attacks of the curious server: none, gradient, model, all. [default: all]")] = None,
    threat: Annotated[Optional[str], Opt(help="Gradient attack threat mode: honest (reads real FedAvg updates), malicious-fedsgd or malicious-fedavg (probes change what clients do). [default: honest]")] = None,
    ray_address: Annotated[Optional[str], Opt(help="Address of an existing Ray cluster. [default: start a local one]")] = None,
    attack_clients: Annotated[Optional[int], Opt(help="Clients attacked per round by gradient inversion. [default: 1]")] = None,
    probe_batch: Annotated[Optional[int], Opt(help="Samples in a FedSGD probe (1 = exact analytic recovery). [default: 1]")] = None,
    mixup: Annotated[Optional[float], Opt(help="Probe clients train with mixup, coefficient ~ Beta(a, a); 0 = off. [default: 0]")] = None,
    recon_steps: Annotated[Optional[int], Opt(help="Image-reconstruction steps per attacked client; 0 = labels/features only. [default: 100]")] = None,
    mia_every: Annotated[Optional[int], Opt(help="Model inversion on the global model every k rounds (and at the last round). Off unless given.")] = None,
    mia_samples: Annotated[Optional[int], Opt(help="Model inversion: attack images kept per target class.")] = None,
    mia_classes: Annotated[Optional[str], Opt(help="Model inversion targets: all, a count (random subset) or a list like 0,3,7.")] = None,
    run_dir: Annotated[Optional[str], Opt(help="Folder that holds run directories. [default: runs]")] = None,
    name: Annotated[Optional[str], Opt(help="Run directory name (must not exist). [default: <dataset>-a<α>-<defense>-s<seed>, numbered if taken]")] = None,
    config: Annotated[Optional[Path], Opt("--config", help="TOML file with any of these options (flags override it).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Show Flower's and fedls' logs.")] = False,
) -> None:
    """Run a Flower simulation of clients training with label smoothing (or another defense),
    evaluated and attacked by a curious server every round."""
    from fedls.attacks import build_observers
    from fedls.federation.simulation import RunInterrupted, prepare
    from fedls.federation.simulation import simulate as run

    setup_logging(verbose)
    cfg = build_config(
        config,
        **_drop_none(
            clients=clients, alpha=alpha, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size, lr=lr,
            optimizer=optimizer, weight_decay=weight_decay, max_grad_norm=max_grad_norm, warmup_rounds=warmup_rounds, ramp_rounds=ramp_rounds, dataset=dataset,
            data_dir=data_dir, image_size=image_size, num_classes=num_classes, private_cap=private_cap,
            partition=partition,
            dirichlet_beta=dirichlet_beta, model=model, weights=weights, defense=defense,
            fraction_train=fraction_train, seed=seed, device=device, client_cpus=client_cpus,
            client_gpus=client_gpus, round_timeout=round_timeout, run_dir=run_dir, name=name,
            defense_options=dict(parse_assignment(p, "--defense-option beta=0.01") for p in defense_option) if defense_option else None,
            central_dp=_drop_none(noise_multiplier=central_dp_noise, clipping_norm=central_dp_clip),
            attacks=attacks, ray_address=ray_address,
            gradient_attack=_drop_none(threat=threat, clients=attack_clients, probe_batch=probe_batch, mixup=mixup, recon_steps=recon_steps),
            model_attack=_drop_none(every=mia_every, ppa=_drop_none(samples_per_class=mia_samples, classes=parse_classes(mia_classes)) or None),
        ),
    )
    prepared = prepare(cfg)
    console.print(f"[bold]fedls simulate[/] {cfg.clients} clients × {cfg.rounds} rounds, α={cfg.alpha:g}, defense={cfg.defense}, dataset={cfg.dataset}")
    progress = Progress(
        TextColumn("[bold blue]rounds"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )
    task = progress.add_task("starting Flower/Ray…", total=cfg.rounds)

    def on_round(server_round: int, record: dict[str, Any]) -> None:
        acc = record.get("global/accuracy", float("nan"))
        progress.update(task, completed=server_round, description=f"acc {acc:.3f}  α {record.get('train/alpha', 0.0):+.3f}")

    try:
        with progress:
            result = run(prepared, observer_factory=build_observers, on_round=on_round, verbose=verbose)
    except RunInterrupted as exc:
        err_console.print(f"{exc} (summary.json says 'interrupted')")
        raise typer.Exit(code=130) from None
    print_summary(result.run.path, result.summary)


def print_summary(path: Path, summary: dict[str, Any]) -> None:
    table = Table(title=f"run {path.name}: {summary['status']}, {summary['rounds_completed']} rounds in {summary['seconds']:.0f} s")
    table.add_column("metric")
    table.add_column("round 0", justify="right")
    table.add_column("final", justify="right")
    final = summary.get("final", {})
    initial = summary.get("initial", {})
    for key in sorted(k for k, v in final.items() if isinstance(v, (int, float)) and k != "round"):
        start = initial.get(key)
        table.add_row(key, "" if start is None else f"{start:.4g}", f"{final[key]:.4g}")
    console.print(table)
    console.print(f"run directory: {path}")
    console.print(f"open it with:  tensorboard --logdir {path.parent}")
