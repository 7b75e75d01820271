"""Benchmark: a federated round in fedls vs. the same local training in a plain PyTorch loop.

Both sides train the same clients (same shards, model, epochs, batch size, seeds) on the
bundled digits; the plain loop runs them one after another in this process, fedls runs them
through Flower's simulation runtime (Ray actors, one CPU each). Reported per client count:
mean round wall time of each side, their ratio, fedls' fixed start-up/shutdown cost, and
peak resident memory (fedls: driver + Ray workers; plain: this process).

    .venv/bin/python scripts/bench_round.py --clients 10 100 --rounds 3 --local-epochs 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from fedls.assembly import build_global_model, data_options
from fedls.config import RunConfig
from fedls.data import load_dataset, partition
from fedls.defenses import Defense, TrainingContext
from fedls.federation.resources import available_cpus
from fedls.federation.simulation import simulate
from fedls.training.local import train_local
from fedls.training.seeding import derive_seed, seed_everything


def _descendants(pid: int) -> list[int]:
    """This process's descendants, from Linux's /proc (Ray workers are forked from its raylet)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            queue.extend(children)
    return found


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakMemory:
    """Samples the summed RSS of this process and all its descendants (Ray workers); Linux only."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            total = sum(_rss_bytes(pid) for pid in [me, *_descendants(me)])
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def plain_rounds(config: RunConfig) -> list[float]:
    """The same local training, client after client, in one process with all cores as torch threads."""
    splits = load_dataset(config.dataset, data_options(config))
    shards = partition(splits.train_targets, config.clients, config.partition, config.seed, config.dirichlet_beta)
    torch.set_num_threads(available_cpus())
    model = build_global_model(config, splits)
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    times = []
    for server_round in range(1, config.rounds + 1):
        started = time.perf_counter()
        states = []
        for cid, shard in enumerate(shards):
            model.load_state_dict(global_state)
            generator = seed_everything(derive_seed(config.seed, server_round, cid))
            ctx = TrainingContext(server_round, cid, len(shard), config.batch_size, config.local_epochs, config.lr, torch.device("cpu"))
            train_local(model, Subset(splits.train, shard.tolist()), config.alpha, ctx, Defense(), generator, config.optimizer)
            states.append((len(shard), {k: v.clone() for k, v in model.state_dict().items()}))
        total = sum(n for n, _ in states)
        global_state = {k: sum(s[k] * (n / total) for n, s in states) for k in global_state}
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results = []
    for clients in args.clients:
        with tempfile.TemporaryDirectory() as tmp:
            config = RunConfig(clients=clients, rounds=args.rounds, local_epochs=args.local_epochs,
                               batch_size=args.batch_size, run_dir=tmp, name="bench", alpha=-0.05)
            before = time.perf_counter()
            with PeakMemory() as fed_memory:
                result = simulate(config)
            fed_total = time.perf_counter() - before
            records = result.run.metrics()
            fed_rounds = [r["time/round_seconds"] for r in records if "time/round_seconds" in r]
            evals = sum(r.get("time/server_eval_seconds", 0.0) for r in records)
            startup = fed_total - sum(fed_rounds) - evals
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        plain = plain_rounds(config)
        fed_round, plain_round = statistics.mean(fed_rounds[1:] or fed_rounds), statistics.mean(plain[1:] or plain)
        row = {
            "clients": clients, "local_epochs": args.local_epochs, "batch_size": args.batch_size,
            "fedls_round_s": round(fed_round, 3), "plain_round_s": round(plain_round, 3),
            "ratio": round(fed_round / plain_round, 3),
            "fedls_first_round_s": round(fed_rounds[0], 3),
            "fedls_fixed_cost_s": round(startup, 2),
            "fedls_peak_rss_mib": round(fed_memory.peak / 2**20),
            "plain_peak_rss_mib": round(max(rss_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024),
        }
        results.append(row)
        print(json.dumps(row))  # noqa: T201 - a script's output
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
