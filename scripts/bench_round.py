"""Benchmark: fedls' federated rounds vs. a plain PyTorch loop with the same parallelism.

Both sides train the same clients on the same data with the same recipe and seeds:

* **fedls** runs one simulation through Flower's simulation runtime (Ray actors, one CPU per
  client, so as many clients train at once as the machine has cores);
* **plain** runs a ``ProcessPoolExecutor`` with *the same number of worker processes*; each
  worker loads the data and the partition through ``fedls.assembly`` once, then trains its share
  of the clients every round with fedls' own ``train_local`` (same seeds, fresh model per client,
  one torch thread, as a fedls client does). The driver averages the returned models with
  fedls' own aggregation (``fedls.federation.aggregation.WeightedMean``).

So the ratio measures what the federation runtime costs on top of the same work done with the
same parallelism, not the parallelism itself. Each side runs in a fresh child process; this
process samples the memory of the child's whole process tree (Ray's daemons and workers
included): the summed RSS (``*_peak_rss_mib``; shared library pages count once per process)
and the summed PSS (``*_peak_pss_mib``; shared pages split among the processes that map them).

Per client count one JSON row, among others:

* ``ratio_same_parallelism``: mean steady round of fedls / of plain (rounds 2..R; client
  training, transport and aggregation; the server's per-round evaluation is not in it);
* ``startup_overhead_s``: wall time of the whole fedls run (``simulate``: validation, Ray start,
  all rounds with their evaluations, shutdown) minus R steady rounds with their evaluations;
* ``fedls_first_round_s``, ``fedls_peak_rss_mib``, ``fedls_peak_pss_mib``;
* ``attack_gradient_s`` / ``attack_model_s``: mean seconds per round of each attack the server
  ran (``time/attack_*`` in metrics.jsonl; ``null`` when off). With attacks on, the fedls round
  used for the ratio excludes the gradient attack's time, since the plain loop has no attacks.

    .venv/bin/python scripts/bench_round.py --clients 10 100 --rounds 3 --local-epochs 20 --out bench.json
    .venv/bin/python scripts/bench_round.py --dataset fashion-mnist --clients 10 100 1000 --rounds 2 --local-epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SIDES = ("fedls", "plain")


# ---------------------------------------------------------------------------------------------
# Memory of a process tree
# ---------------------------------------------------------------------------------------------
def _children_proc(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    found, queue = [pid], [pid]
    while queue:
        children = _children_proc(queue.pop())
        found.extend(children)
        queue.extend(children)
    return found


def _proc_kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory_mib(pid: int, with_pss: bool = True) -> tuple[float, float]:
    """Summed RSS and summed PSS (MiB) of ``pid`` and all its descendants (see :func:`members_memory_mib`)."""
    return members_memory_mib(_tree(pid), with_pss)


def members_memory_mib(members: list[int], with_pss: bool = True) -> tuple[float, float]:
    """Summed RSS and summed PSS (MiB) of the processes ``members``, from Linux's /proc
    (``statm`` for RSS; ``smaps_rollup`` for PSS, which walks every mapping and costs the
    kernel milliseconds per torch process, so callers ask for it less often). PSS is 0.0
    when ``with_pss`` is false."""
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    rss = pss = 0
    for member in members:
        try:
            rss += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * page_kib
        except (OSError, ValueError, IndexError):
            continue
        if with_pss:
            pss += _proc_kib(f"/proc/{member}/smaps_rollup", "Pss:")
    return rss / 1024, pss / 1024


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux's /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class TreeMemorySampler:
    """Samples a process tree in a thread until stopped: peak summed RSS (every ``interval_s``),
    peak summed PSS (every ``pss_every``-th sample: reading it is what costs), and the CPU
    seconds of every process seen (a measure of work that, unlike wall time, other jobs on the
    machine barely change; a process's last interval before it exits can be missed). The
    sampler runs in this process, outside the measured tree, and its own CPU time is reported
    (``sampler_cpu_s``): on 2 cores it is taken from the measured side."""

    def __init__(self, pid: int, interval_s: float = 0.5, pss_every: int = 4) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.pss_every = pss_every
        self.peak_rss_mib = 0.0
        self.peak_pss_mib = 0.0
        self.sampler_cpu_s = 0.0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.thread_time()
        sample = 0
        while not self._stop.is_set():
            members = _tree(self.pid)  # walked once per sample: it reads every thread's children
            rss, pss = members_memory_mib(members, with_pss=sample % self.pss_every == 0)
            self.peak_rss_mib = max(self.peak_rss_mib, rss)
            self.peak_pss_mib = max(self.peak_pss_mib, pss)
            for member in members:
                used = _cpu_seconds(member)
                if used is not None:
                    self._cpu[member] = max(used, self._cpu.get(member, 0.0))
            sample += 1
            self.sampler_cpu_s = time.thread_time() - started
            self._stop.wait(self.interval_s)

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------------
# The plain loop: same parallelism, same training code, same averaging
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _plain_worker_init(config_toml: str) -> None:
    """Once per worker process: one torch thread (a fedls client gets one CPU), data, partition."""
    import tomllib

    import torch

    from fedls.assembly import client_partition, load_splits
    from fedls.config import RunConfig

    torch.set_num_threads(1)
    config = RunConfig.from_dict(tomllib.loads(config_toml), "bench config")
    splits = load_splits(config)
    _WORKER.update(config=config, splits=splits, shards=client_partition(config, splits))


def _plain_train(
    server_round: int, global_state: dict[str, np.ndarray], client_ids: list[int]
) -> list[tuple[int, dict[str, np.ndarray]]]:
    """One worker's share of a round, exactly as fedls' client trains (fresh model per client)."""
    import torch
    from torch.utils.data import Subset

    from fedls.assembly import build_global_model
    from fedls.defenses import TrainingContext, build_defense
    from fedls.training.local import train_local
    from fedls.training.seeding import derive_seed, seed_everything

    config, splits, shards = _WORKER["config"], _WORKER["splits"], _WORKER["shards"]
    recipe = config.recipe(config.schedule().alpha_at(server_round))
    state = {k: torch.from_numpy(v) for k, v in global_state.items()}
    out = []
    for cid in client_ids:
        generator = seed_everything(derive_seed(config.seed, server_round, cid))
        model = build_global_model(config, splits)
        model.load_state_dict(state)
        defense = build_defense(recipe.defense, config.defense_options)
        ctx = TrainingContext(
            server_round=server_round, client_id=cid, num_samples=len(shards[cid]), batch_size=recipe.batch_size,
            local_epochs=recipe.local_epochs, lr=recipe.lr, device=torch.device("cpu"), total_rounds=config.rounds,
        )
        result = train_local(model, Subset(splits.train, shards[cid].tolist()), recipe.alpha, ctx, defense, generator,
                             recipe.optimizer, recipe.weight_decay, recipe.max_grad_norm)
        trained = defense.unwrap_model(model).state_dict()
        out.append((result.num_samples, {k: v.detach().numpy().copy() for k, v in trained.items()}))
    return out


def _chunks(n: int, parts: int) -> list[list[int]]:
    """Contiguous, balanced shares of the client ids."""
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [list(range(bounds[i], bounds[i + 1])) for i in range(parts) if bounds[i] < bounds[i + 1]]


def _fedavg(results: Iterator[list[tuple[int, dict[str, np.ndarray]]]]) -> dict[str, np.ndarray]:
    """The server's average, by the same code: fedls' exact sample-weighted mean."""
    from fedls.federation.aggregation import WeightedMean

    mean = WeightedMean()
    for share in results:
        for num_samples, state in share:
            mean.add(state, num_samples)
    return mean.result()


def run_plain(config_toml: str, workers: int) -> dict[str, Any]:
    import multiprocessing
    import tomllib

    from fedls.assembly import build_global_model, load_splits
    from fedls.config import RunConfig
    from fedls.training.seeding import derive_seed, seed_everything

    started = time.perf_counter()
    config = RunConfig.from_dict(tomllib.loads(config_toml), "bench config")
    splits = load_splits(config)
    seed_everything(derive_seed(config.seed, 0, 10**6))  # the server's initial model, as fedls draws it
    global_state = {k: v.detach().numpy().copy() for k, v in build_global_model(config, splits).state_dict().items()}
    shares = _chunks(config.clients, workers)
    rounds: list[float] = []
    # spawn: fresh interpreters like Ray's workers (fork after torch has started threads is unsafe)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_plain_worker_init, initargs=(config_toml,)) as pool:
        for server_round in range(1, config.rounds + 1):
            round_started = time.perf_counter()
            futures = [pool.submit(_plain_train, server_round, global_state, share) for share in shares]
            global_state = _fedavg(f.result() for f in futures)
            rounds.append(time.perf_counter() - round_started)
    return {"total_s": time.perf_counter() - started, "rounds_s": rounds, "final_state": global_state}


# ---------------------------------------------------------------------------------------------
# The fedls side
# ---------------------------------------------------------------------------------------------
def _mean_or_none(values: list[float]) -> float | None:
    return round(statistics.mean(values), 4) if values else None


def run_fedls(config_toml: str) -> dict[str, Any]:
    import tomllib

    import torch

    from fedls.config import RunConfig
    from fedls.federation.simulation import simulate

    config = RunConfig.from_dict(tomllib.loads(config_toml), "bench config")
    started = time.perf_counter()
    result = simulate(config)
    total = time.perf_counter() - started
    # metrics.jsonl is last written when the last round ends: what follows is the teardown
    # (Flower's runtime and Ray shut down, summary and model written, Ray's folder removed)
    teardown = time.time() - (result.run.path / "metrics.jsonl").stat().st_mtime
    records = result.run.metrics()
    state = torch.load(result.run.path / "model.pt", weights_only=True)

    def series(key: str) -> list[float]:
        return [float(r[key]) for r in records if key in r]

    return {
        "total_s": total,
        "rounds_s": series("time/round_seconds"),
        "evals_s": [float(r.get("time/server_eval_seconds", 0.0)) for r in records],  # index 0: the initial model
        "attack_gradient_s": series("time/attack_gradient_s"),
        "attack_model_s": series("time/attack_model_s"),
        "parallel_clients": result.summary["parallel_clients"],
        "ray_start_s": result.summary.get("timing", {}).get("ray_start_s"),
        "teardown_s": teardown,
        "final_accuracy": result.summary["final"].get("global/accuracy"),
        "final_state": {k: v.numpy() for k, v in state.items()},
    }


def _child(side: str, config_toml: str, workers: int, out: Path) -> None:
    """Run one side in this (fresh) process and store its timings and final model in ``out``."""
    result = run_fedls(config_toml) if side == "fedls" else run_plain(config_toml, workers)
    np.savez(out.with_suffix(".npz"), **result.pop("final_state"))
    out.write_text(json.dumps(result))


def _run_side(
    side: str, config_toml: str, workers: int, tmp: Path
) -> tuple[dict[str, Any], dict[str, np.ndarray], TreeMemorySampler]:
    out = tmp / f"{side}.json"
    cmd = [sys.executable, __file__, "--child", side, "--child-config", str(tmp / "config.toml"),
           "--child-workers", str(workers), "--child-out", str(out)]
    (tmp / "config.toml").write_text(config_toml)
    proc = subprocess.Popen(cmd)
    with TreeMemorySampler(proc.pid) as memory:
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"the {side} side failed with exit code {code}")
    with np.load(out.with_suffix(".npz")) as arrays:
        state = {k: arrays[k] for k in arrays.files}
    return json.loads(out.read_text()), state, memory


def measure(clients: int, args: argparse.Namespace) -> dict[str, Any]:
    from fedls.config import RunConfig
    from fedls.federation.resources import resolve_resources

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fedls-bench-") as name:
        tmp = Path(name)
        config = RunConfig(
            dataset=args.dataset, clients=clients, rounds=args.rounds, local_epochs=args.local_epochs,
            batch_size=args.batch_size, alpha=args.alpha, attacks=args.attacks, device="cpu",
            run_dir=str(tmp / "runs"), name="bench", seed=args.seed,
        )
        config.check_registries()
        workers = resolve_resources("cpu", clients, None, None).parallel_clients  # Ray's actor count
        config_toml = config.to_toml()
        fed, fed_state, fed_mem = _run_side("fedls", config_toml, workers, tmp)
        plain, plain_state, plain_mem = _run_side("plain", config_toml, workers, tmp)
    load_after = os.getloadavg()

    rounds = fed["rounds_s"]
    grad = fed["attack_gradient_s"]
    # The gradient attack runs inside the round (before aggregation); the plain loop has none.
    training = [r - g for r, g in zip(rounds, grad, strict=True)] if len(grad) == len(rounds) else rounds
    steady = training[1:] or training
    evals = fed["evals_s"][1:]  # per-round evaluations (index 0 is the initial model's)
    steady_round_with_eval = statistics.mean(r + e for r, e in zip(rounds[1:] or rounds, (evals[1:] or evals), strict=True))
    plain_steady = plain["rounds_s"][1:] or plain["rounds_s"]
    fed_round, plain_round = statistics.mean(steady), statistics.mean(plain_steady)
    diff = max(float(np.max(np.abs(fed_state[k] - plain_state[k]))) for k in plain_state)
    return {
        "clients": clients, "dataset": args.dataset, "rounds": args.rounds, "local_epochs": args.local_epochs,
        "batch_size": args.batch_size, "attacks": args.attacks, "workers": workers,
        "fedls_round_s": round(fed_round, 4),
        "plain_round_s": round(plain_round, 4),
        "ratio_same_parallelism": round(fed_round / plain_round, 3),
        "startup_overhead_s": round(fed["total_s"] - args.rounds * steady_round_with_eval, 2),
        "fedls_total_s": round(fed["total_s"], 2),
        "fedls_first_round_s": round(rounds[0], 3),
        "fedls_ray_start_s": fed["ray_start_s"],  # ray.init inside simulate()
        "fedls_teardown_s": round(fed["teardown_s"], 2),  # from the last round's end to simulate()'s return
        "fedls_rounds_s": [round(r, 3) for r in rounds],
        "fedls_initial_eval_s": round(fed["evals_s"][0], 3),
        "plain_total_s": round(plain["total_s"], 2),
        "plain_startup_overhead_s": round(plain["total_s"] - args.rounds * plain_round, 2),
        "plain_rounds_s": [round(r, 3) for r in plain["rounds_s"]],
        "fedls_peak_rss_mib": round(fed_mem.peak_rss_mib),
        "fedls_peak_pss_mib": round(fed_mem.peak_pss_mib),
        "plain_peak_rss_mib": round(plain_mem.peak_rss_mib),
        "plain_peak_pss_mib": round(plain_mem.peak_pss_mib),
        "fedls_cpu_s": round(fed_mem.cpu_s, 1),  # CPU seconds of the whole tree, whole run
        "plain_cpu_s": round(plain_mem.cpu_s, 1),
        "sampler_cpu_s": [round(fed_mem.sampler_cpu_s, 1), round(plain_mem.sampler_cpu_s, 1)],  # fedls, plain
        "attack_gradient_s": _mean_or_none(grad),
        "attack_model_s": _mean_or_none(fed["attack_model_s"]),
        "attack_gradient_rounds_s": [round(v, 3) for v in grad],
        "attack_model_rounds_s": [round(v, 3) for v in fed["attack_model_s"]],
        "final_model_max_abs_diff": diff,  # fedls vs plain: the same training, so ~0
        "fedls_final_accuracy": fed["final_accuracy"],
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
    }


# ---------------------------------------------------------------------------------------------
# The table in BENCHMARKS.md, rendered from a result file alone
# ---------------------------------------------------------------------------------------------
DOCUMENT_NAME = "BENCHMARKS.md"
AFTER_PREFIX = "after"  # result files whose rows the targets block is judged on (after-digits.json, ...)
TARGETS_KEY = "targets"


def _pair(row: dict[str, Any], key: str) -> str:
    return f"{row['fedls_' + key]:,} / {row['plain_' + key]:,}"


def _ray(row: dict[str, Any]) -> str:
    if row.get("fedls_ray_start_s") is None:  # rows measured before the split was recorded
        return "—"
    return f"{row['fedls_ray_start_s']:.1f} / {row['fedls_teardown_s']:.1f}"


def _attacks(row: dict[str, Any]) -> str:
    if row.get("attacks", "none") == "none":
        return "off"
    def shown(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"
    return f"{row['attacks']}: {shown(row['attack_gradient_s'])} / {shown(row['attack_model_s'])}"


def render_rows(rows: list[dict[str, Any]], results: Path) -> str:
    """One Markdown table of a result file's rows and the stamp of the code that measured them."""
    import _docblocks as blocks

    header = (
        "| clients | dataset, rounds × local epochs | fedls round (s) | plain round (s) | **ratio** "
        "| start-up overhead (s) | plain start-up (s) | Ray start / teardown (s) | fedls first round (s) "
        "| peak PSS fedls / plain (MiB) "
        "| peak RSS fedls / plain (MiB) | CPU-s fedls / plain | attacks: gradient / model inversion (s per round) "
        "| load avg 1 min |\n"
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"| {row['clients']:,} | {row['dataset']}, {row['rounds']} × {row['local_epochs']} "
            f"| {row['fedls_round_s']:.2f} | {row['plain_round_s']:.2f} | **{row['ratio_same_parallelism']:.2f}** "
            f"| {row['startup_overhead_s']:.1f} | {row['plain_startup_overhead_s']:.1f} | {_ray(row)} "
            f"| {row['fedls_first_round_s']:.1f} "
            f"| {_pair(row, 'peak_pss_mib')} | {_pair(row, 'peak_rss_mib')} "
            f"| {row['fedls_cpu_s']:.0f} / {row['plain_cpu_s']:.0f} | {_attacks(row)} "
            f"| {row['loadavg_before'][0]:.1f} → {row['loadavg_after'][0]:.1f} |"
        )
    meta = rows[0]["meta"]
    same = all(row["final_model_max_abs_diff"] == 0.0 for row in rows)
    lines += [
        "",
        ("Both sides ended with the identical global model in every row." if same else
         "**The two sides' final models differ** (`final_model_max_abs_diff`): the comparison is not of the same work."),
        "",
        f"<sub>Measured with fedls {meta['fedls_version']} at commit `{meta['git_commit']}`: `{meta['command']}` "
        f"(nice {meta['nice']}, {meta['cpus']} CPUs). Raw rows: `{blocks.shown_path(results)}`; re-render: "
        f"`.venv/bin/python scripts/bench_round.py --render {blocks.shown_path(results)} --write-docs`.</sub>",
    ]
    return "\n".join(lines)


# Issue 12's targets on the 2-core CPU machine
RATIO_LIMIT = 1.2  # fedls steady round / plain steady round, at 10 and 100 clients
STARTUP_LIMIT_S = 6.0
SCALE_CLIENTS = 1000
MEMORY_LIMIT_MIB = 2.5 * 1024  # process-tree peak at 1,000 clients (PSS: shared pages counted once)


def render_targets(rows: list[dict[str, Any]], files: list[Path]) -> str:
    """The targets, each against the rows that measure it (the rows of ``files`` with attacks off)."""
    import _docblocks as blocks

    rows = [r for r in rows if r.get("attacks", "none") == "none"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = ["| target | limit | measured | |", "|---|---|---|---|"]
    for clients in (10, 100):
        ratios = [(r["dataset"], r["ratio_same_parallelism"]) for r in rows if r["clients"] == clients]
        if ratios:
            shown = ", ".join(f"{d} {v:.2f}" for d, v in ratios)
            lines.append(f"| same-parallelism ratio, {clients} clients | ≤ {RATIO_LIMIT} | {shown} "
                         f"| {verdict(max(v for _, v in ratios) <= RATIO_LIMIT)} |")
    startups = [(r["clients"], r["dataset"], r["startup_overhead_s"], r["plain_startup_overhead_s"]) for r in rows]
    if startups:
        shown = "; ".join(f"{c:,} {d}: {s:.1f} (plain {p:.1f})" for c, d, s, p in startups)
        lines.append(f"| start-up overhead (s) | ≤ {STARTUP_LIMIT_S:g} | {shown} "
                     f"| {verdict(max(s for _, _, s, _ in startups) <= STARTUP_LIMIT_S)} |")
    scale = [r for r in rows if r["clients"] == SCALE_CLIENTS]
    for row in scale:
        lines.append(f"| {SCALE_CLIENTS:,} clients, {row['rounds']} rounds × {row['local_epochs']} epoch: peak memory "
                     f"(PSS; summed RSS beside) | ≤ {MEMORY_LIMIT_MIB:,.0f} MiB | {row['fedls_peak_pss_mib']:,} MiB "
                     f"(RSS {row['fedls_peak_rss_mib']:,}) | {verdict(row['fedls_peak_pss_mib'] <= MEMORY_LIMIT_MIB)} |")
        smaller = [r for r in rows if r["dataset"] == row["dataset"] and r["clients"] < SCALE_CLIENTS]
        if smaller:
            low = min(smaller, key=lambda r: r["clients"])
            growth = row["fedls_peak_pss_mib"] - low["fedls_peak_pss_mib"]
            lines.append(f"| memory flat in the number of clients: PSS growth {low['clients']:,} → {SCALE_CLIENTS:,} "
                         f"clients | ≈ 0 | {growth:+,} MiB ({low['fedls_peak_pss_mib']:,} → {row['fedls_peak_pss_mib']:,}) "
                         f"| {verdict(growth <= 0.05 * low['fedls_peak_pss_mib'])} (limit used: 5 %) |")
    sources = ", ".join(f"`{blocks.shown_path(f)}`" for f in files)
    lines += ["", f"<sub>Rendered from {sources}; re-render with this script's `--render ... --write-docs`.</sub>"]
    return "\n".join(lines)


def blocks_of(files: list[Path]) -> dict[str, str]:
    """The block of each result file, keyed by its name, and the ``targets`` block judged on the
    rows of the files named ``after*``; files are taken in name order, whatever order is given."""
    files = sorted(files, key=lambda p: p.name)
    bodies: dict[str, str] = {}
    after: list[dict[str, Any]] = []
    for path in files:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not rows or "meta" not in rows[0]:
            raise SystemExit(f"{path}: no rows with their provenance; measure again with this script's --out")
        bodies[path.stem] = render_rows(rows, path)
        if path.stem.startswith(AFTER_PREFIX):
            after.extend(rows)
    if after:
        bodies[TARGETS_KEY] = render_targets(after, [p for p in files if p.stem.startswith(AFTER_PREFIX)])
    return bodies


def render(files: list[Path], write_docs: bool) -> None:
    """Print (and with ``write_docs`` put into BENCHMARKS.md) the blocks of :func:`blocks_of`, keyed
    ``<!-- BEGIN generated by scripts/bench_round.py KEY -->``."""
    import _docblocks as blocks

    for key, body in blocks_of(files).items():
        print(body)  # noqa: T201 - a script's output
        if write_docs:
            document = blocks.ROOT / DOCUMENT_NAME
            changed = blocks.write_block(document, *blocks.markers("bench_round.py", key), body)
            print(f"{DOCUMENT_NAME} [{key}]: {'updated' if changed else 'unchanged'}", file=sys.stderr)  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--dataset", default="digits",
                        help="digits holds 721 training samples: use fashion-mnist for 1,000 clients")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=-0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacks", default="none", choices=["none", "gradient", "model", "all"],
                        help="attacks the fedls server runs; their time per round is reported")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as a JSON list here")
    parser.add_argument("--render", type=Path, nargs="+", metavar="FILE",
                        help="measure nothing: print the table of each result file (see --write-docs)")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"with --render: replace each file's block (keyed by the file name) in {DOCUMENT_NAME}")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--child-config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.child_config.read_text(), args.child_workers, args.child_out)
        return
    if args.render:
        render(args.render, args.write_docs)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first round is not a steady round)")
    import _docblocks as blocks

    meta = blocks.run_meta("bench_round.py", sys.argv[1:])
    rows = []
    for clients in args.clients:
        row = {**measure(clients, args), "meta": meta}
        rows.append(row)
        print(json.dumps(row), flush=True)  # noqa: T201 - a script's output
        if args.out:  # after every row: a long run that dies keeps what it measured
            args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
