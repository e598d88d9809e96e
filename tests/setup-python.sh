#!/usr/bin/env bash
# Installs the Python packages the DuckDB oracle, the benchmarks and the notebooks use into
# .venv/ (idempotent; only PyPI is needed). Prints the venv's python path.
#
#   tests/setup-python.sh              duckdb only (the oracle tests and benchmarks)
#   tests/setup-python.sh --notebooks  also notebooks/requirements.txt (pandas, matplotlib,
#                                      nbclient, ...) into the same venv
#   tests/setup-python.sh --pathway    also Pathway and pandas (benches/pathway_compare.py)
#
# Everything but the python path goes to stderr, so callers can use `$(tests/setup-python.sh)`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv"
# One caller at a time: tests run in parallel and several of them call this script (the lock is
# this script itself, so each checkout has its own, like its .venv/).
if command -v flock >/dev/null; then
  exec 9<"${BASH_SOURCE[0]}"
  flock 9
fi
notebooks=0
pathway=0
for arg in "$@"; do
  case "$arg" in
    --notebooks) notebooks=1 ;;
    --pathway) pathway=1 ;;
    *) echo "usage: $0 [--notebooks] [--pathway]" >&2; exit 2 ;;
  esac
done
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "duckdb>=1.1" >&2
fi
if [ "$notebooks" = 1 ]; then
  # Reinstall only when notebooks/requirements.txt changed since the last successful install
  # (the stamp lives inside the venv, so a fresh venv installs again).
  reqs="$here/notebooks/requirements.txt"
  stamp="$venv/.notebooks-requirements.sha256"
  want="$(sha256sum "$reqs" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
    || ! "$venv/bin/python" -c "import duckdb, pandas, matplotlib, nbformat, nbclient, ipykernel" 2>/dev/null; then
    "$venv/bin/pip" install --quiet -r "$reqs" >&2
    echo "$want" >"$stamp"
  fi
fi
if [ "$pathway" = 1 ] && ! "$venv/bin/python" -c "import pathway, pandas, pyarrow" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "pathway>=0.33,<1" "pandas>=2.2" "pyarrow>=15" >&2
fi
echo "$venv/bin/python"
