#!/usr/bin/env bash
# Create (once) the virtual environment with the pinned stack and fedls installed in it.
# Re-runs only when pyproject.toml or constraints.txt changed. FEDLS_VENV overrides the place.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FEDLS_VENV:-$root/.venv}"
stamp="$venv/.fedls-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$root/pyproject.toml" ] && [ "$stamp" -nt "$root/constraints.txt" ]; then
  exit 0
fi
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "fedls needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
echo "setting up $venv (first run: torch, flwr, opacus; a few minutes)..." >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" -e "$root[test]"
touch "$stamp"
