#!/usr/bin/env bash
# Installs the Python packages the DuckDB oracle, the benchmarks and the notebooks use into
# .venv/ (idempotent; only PyPI is needed). Prints the venv's python path.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "duckdb>=1.1" >&2
fi
echo "$venv/bin/python"
