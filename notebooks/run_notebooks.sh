#!/usr/bin/env bash
# Executes every notebook in notebooks/ headlessly (nbclient, matplotlib backend Agg) and exits
# non-zero if any cell raises. The committed .ipynb files are only read, never written back, so
# they keep their cleared outputs. The notebooks run sluice themselves when its outputs are
# missing (target/release/sluice, or `cargo run --release`).
#
#   notebooks/run_notebooks.sh                 all notebooks
#   notebooks/run_notebooks.sh some.ipynb ...  just these
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="$("$here/../tests/setup-python.sh" --notebooks)"

if [ "$#" -gt 0 ]; then
  notebooks=("$@")
else
  notebooks=("$here"/*.ipynb)
fi

export MPLBACKEND=Agg
"$python" - "${notebooks[@]}" <<'PY'
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

failed = []
for arg in sys.argv[1:]:
    path = Path(arg).resolve()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},  # run in the notebook's folder
    )
    start = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as e:
        failed.append(path.name)
        print(f"FAIL {path.name}\n{e}", file=sys.stderr)
        continue
    print(f"ok   {path.name} ({len(nb.cells)} cells, {time.monotonic() - start:.1f}s)")
    # Deliberately no nbformat.write: the committed notebook keeps its cleared outputs.

print(f"{len(sys.argv) - 1 - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PY
