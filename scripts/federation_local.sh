#!/usr/bin/env bash
# A real multi-process Flower federation on this machine (Flower's Deployment Engine):
# one SuperLink and N SuperNodes as separate processes on loopback (--insecure), each
# SuperNode with its own partition (node config partition-id / num-partitions), running the
# fedls app with `flwr run`. Every process this script starts is stopped by its PID (process
# group) on exit, failure or Ctrl-C. The LAST line printed is the run directory's absolute path.
#
#   scripts/federation_local.sh --supernodes 3 --rounds 2 [--run-config 'alpha=-0.05 defense="bido"']
#                               [--run-dir DIR] [--work DIR] [--node-wait S]
#
# Exit status: 0 when the run finished and its summary says complete/degraded, 1 otherwise,
# 2 for bad arguments. Logs of every process stay in the work folder (printed on failure).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FEDLS_VENV:-$root/.venv}"
supernodes=2
rounds=2
extra=""
run_dir="$PWD/runs"
work=""
node_wait=60

usage() { echo "usage: $0 --supernodes N --rounds R [--run-config 'K=V ...'] [--run-dir DIR] [--work DIR] [--node-wait S]" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --supernodes) supernodes="${2:-}"; shift 2 ;;
        --rounds) rounds="${2:-}"; shift 2 ;;
        --run-config) extra="${2:-}"; shift 2 ;;
        --run-dir) run_dir="${2:-}"; shift 2 ;;
        --work) work="${2:-}"; shift 2 ;;
        --node-wait) node_wait="${2:-}"; shift 2 ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "error: unknown argument $1" >&2; usage ;;
    esac
done
[[ "$supernodes" =~ ^[1-9][0-9]*$ ]] || { echo "error: --supernodes must be a whole number >= 1 (got '$supernodes')" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a whole number >= 1 (got '$rounds')" >&2; exit 2; }
[[ -x "$venv/bin/flower-superlink" ]] || { echo "error: $venv has no flower-superlink; run scripts/setup.sh first" >&2; exit 2; }
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"   # absolute: the ServerApp runs in the SuperLink's directory
work="${work:-$(mktemp -d -t fedls-fed-XXXXXX)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

# Flower's state and connections for this federation only; the app runs in this venv
# (no per-run `uv sync`); Ray is not involved (the Deployment Engine runs ClientApps as processes).
export FLWR_HOME="$work/flwr-home"
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export FLWR_DISABLE_UPDATE_CHECK=1
export PATH="$venv/bin:$PATH"
mkdir -p "$FLWR_HOME"

pids=()
helpers=()
descendants() {  # every live descendant PID of the given PIDs (Flower detaches some helpers into new sessions)
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        { parent[$1] = $2 }
        END {
            n = split(roots, queue, " "); for (i = 1; i <= n; i++) seen[queue[i]] = 1
            for (i = 1; i <= n; i++) for (p in parent) if (parent[p] == queue[i] && !(p in seen)) { seen[p] = 1; queue[++n] = p; print p }
        }'
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Newest first: SuperNodes, then the SuperLink. Each runs in its own process group (setsid);
    # the SuperLink starts its SuperExec (and that the ServerApp) in a new session, so their
    # PIDs are collected from the process tree before anything is stopped.
    local i pid extra_pids
    extra_pids="$( [[ ${#pids[@]} -gt 0 ]] && descendants "${pids[@]}" || true)"
    # the log follower (a subshell with flwr and tee) and its children
    [[ ${#helpers[@]} -gt 0 ]] && extra_pids="$extra_pids $(descendants "${helpers[@]}") ${helpers[*]}"
    for ((i=${#pids[@]}-1; i>=0; i--)); do
        kill -TERM -- "-${pids[i]}" 2>/dev/null || true
    done
    for pid in $extra_pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in $extra_pids; do
        for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        echo "federation failed (exit $status); logs in $work:" >&2
        for f in "$work"/*.log; do [[ -f "$f" ]] && { echo "--- $f (tail)" >&2; tail -n 15 "$f" >&2; }; done
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() {  # N distinct free loopback ports
    "$venv/bin/python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r -a ports <<< "$(free_ports $((supernodes + 1)))"
link_port="${ports[0]}"

start() {  # start a process in its own process group; remember its PID
    local name="$1"; shift
    setsid "$@" > "$work/$name.log" 2>&1 &
    pids+=("$!")
    # PID, name and the shell-quoted command, for tools that inject faults (tests/test_deployment.py)
    { printf '%s %s' "$!" "$name"; printf ' %q' "$@"; printf '\n'; } >> "$work/pids"
}

start superlink flower-superlink --insecure --host 127.0.0.1 --port "$link_port" \
    --isolation subprocess --disable-runtime-dependency-installation
for _ in $(seq 1 150); do
    "$venv/bin/python" -c "import httpx,sys; sys.exit(0 if httpx.get('http://127.0.0.1:$link_port/health', timeout=0.5).is_success else 1)" 2>/dev/null && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "error: flower-superlink exited at start-up" >&2; exit 1; }
    sleep 0.2
done

for ((i=0; i<supernodes; i++)); do
    start "supernode-$i" flower-supernode --insecure --superlink "127.0.0.1:$link_port" \
        --host 127.0.0.1 --port "${ports[i+1]}" --isolation subprocess \
        --node-config "partition-id=$i num-partitions=$supernodes"
done

cat > "$FLWR_HOME/config.toml" <<EOF
[superlink]
default = "fedls-local"

[superlink.fedls-local]
address = "127.0.0.1:$link_port"
insecure = true
EOF

cd "$root"
started=$(date +%s)
flwr run . fedls-local --format json \
    --run-config "num-server-rounds=$rounds clients=$supernodes node-wait=$node_wait run-dir='$run_dir' $extra" \
    > "$work/submit.json" 2> "$work/submit.log" || { cat "$work/submit.log" >&2; exit 1; }
run_id="$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['run-id'])" "$work/submit.json")"
echo "run $run_id submitted to the SuperLink at 127.0.0.1:$link_port with $supernodes SuperNodes" >&2
# In the background and waited for: bash runs a trap only after its foreground command ends,
# so a `kill -INT <this script>` must not wait for the whole run.
( flwr log "$run_id" fedls-local --stream 2>&1 | tee "$work/run.log" >&2 ) &
helpers+=("$!")
wait "$!" || true

# The run's own status and the run directory the ServerApp announced.
status="$(flwr ls fedls-local --run-id "$run_id" --format json 2>/dev/null \
    | "$venv/bin/python" -c "import json,sys; runs=json.load(sys.stdin).get('runs',[]); print(runs[0]['status'] if runs else 'unknown')" || echo unknown)"
path="$(sed -n 's/.*run directory: \(\/.*\)$/\1/p' "$work/run.log" | tail -n 1 | tr -d '\r')"
echo "run $run_id: $status in $(( $(date +%s) - started )) s (Flower status)" >&2
if [[ -z "$path" || ! -f "$path/summary.json" ]]; then
    echo "error: the run did not produce a run directory (Flower status: $status)" >&2
    exit 1
fi
summary_status="$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$path/summary.json")"
echo "open it with:  tensorboard --logdir $(dirname "$path")" >&2
if [[ "$summary_status" != "complete" && "$summary_status" != "degraded" ]]; then
    echo "error: run $summary_status (see $path/summary.json)" >&2
    echo "$path"
    exit 1
fi
echo "$path"
