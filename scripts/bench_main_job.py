"""Time the README's main job, cold (empty model-inversion cache) and warm, and record it.

    .venv/bin/python scripts/bench_main_job.py --out docs/results/bench_main_job.json --benchmarks BENCHMARKS.md

Runs `fedls simulate --clients 10 --alpha -0.05` twice with the same settings: first with an
empty cache (the prior and the judge are trained and cached before Ray starts), then warm.
Each row records the command's wall time, the simulation time from summary.json, the final
accuracy and headline leakage, the load average before and after, fedls' version and commit.
With ``--benchmarks`` the Markdown table replaces the block between
``<!-- generated:bench-main-job -->`` markers in that file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["simulate", "--clients", "10", "--alpha", "-0.05"]
MARKER = "bench-main-job"


def run_once(label: str, cache: Path, runs: Path) -> dict[str, object]:
    env = {**os.environ, "FEDLS_CACHE": str(cache)}
    fedls = Path(sys.executable).parent / "fedls"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    command = [str(fedls), *COMMAND, "--run-dir", str(runs), "--name", label]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads((runs / label / "summary.json").read_text())
    final = summary["final"]
    return {
        "run": label,
        "wall_s": round(wall, 1),
        "simulation_s": summary["seconds"],
        "accuracy": final.get("global/accuracy"),
        "label_count_mae": final.get("leakage/gradient/label_count_mae"),
        "mi_acc1": final.get("leakage/model_inversion/acc1"),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "fedls_version": summary.get("fedls_version"),
        "git_commit": summary.get("git_commit"),
    }


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| run | wall time of the command (s) | simulation (s) | final accuracy | label-count error | MI Acc@1 "
        "| load average before / after |",
        "|---|--:|--:|--:|--:|--:|--|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['wall_s']} | {r['simulation_s']} | {r['accuracy']:.3f} | {r['label_count_mae']:.2f} | "
            f"{r['mi_acc1']:.2f} | {r['load_before']} / {r['load_after']} |"
        )
    commits = sorted({str(r["git_commit"]) for r in rows})
    lines.append("")
    lines.append(f"<sub>fedls {rows[0]['fedls_version']} at {', '.join(commits)}; "
                 f"`.venv/bin/fedls {' '.join(COMMAND)}`; made by `python scripts/bench_main_job.py`.</sub>")
    return "\n".join(lines) + "\n"


def replace_block(path: Path, body: str) -> None:
    text = path.read_text()
    pattern = re.compile(rf"(<!-- generated:{MARKER} -->\n).*?(<!-- /generated:{MARKER} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no <!-- generated:{MARKER} --> block")
    path.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the rows")
    parser.add_argument("--benchmarks", type=Path, help="Markdown file with a generated:bench-main-job block to update")
    parser.add_argument("--from-json", action="store_true", help="do not run: rebuild the table from --out")
    args = parser.parse_args()
    if args.from_json:
        rows = json.loads(args.out.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="fedls-bench-") as tmp:
            cache, runs = Path(tmp) / "cache", Path(tmp) / "runs"
            rows = [run_once("cold", cache, runs), run_once("warm", cache, runs)]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows)
    print(table)
    if args.benchmarks is not None:
        replace_block(args.benchmarks, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
