#!/usr/bin/env bash
# Executes every notebook in notebooks/ headlessly (nbclient, inline matplotlib) and exits
# non-zero if any cell raises. CI runs it through `cargo test --release` (the integration test
# `notebooks`), which only executes: the committed .ipynb files are read, never written.
#
#   notebooks/run_notebooks.sh                   all notebooks, execute only
#   notebooks/run_notebooks.sh some.ipynb ...    just these
#   notebooks/run_notebooks.sh --write [...]     also write each executed notebook back, with
#                                                its outputs (to refresh the committed ones)
#
# Each notebook runs sluice itself, into its own fresh folder SLUICE_NOTEBOOK_OUT=ROOT/NAME (the
# notebook's name without .ipynb). ROOT is $NOTEBOOKS_OUT if set (kept afterwards), else a
# temporary folder removed at exit. SLUICE_BIN, if set, is the sluice binary the notebooks run;
# otherwise they use target/release/sluice, or `cargo run --release`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

write=0
notebooks=()
for arg in "$@"; do
  case "$arg" in
    --write) write=1 ;;
    -*) echo "usage: $0 [--write] [NOTEBOOK.ipynb]..." >&2; exit 2 ;;
    *) notebooks+=("$arg") ;;
  esac
done
if [ "${#notebooks[@]}" -eq 0 ]; then
  notebooks=("$here"/*.ipynb)
fi

python="$("$here/../tests/setup-python.sh" --notebooks)"

if [ -n "${NOTEBOOKS_OUT:-}" ]; then
  out_root="$NOTEBOOKS_OUT"
  mkdir -p "$out_root"
else
  out_root="$(mktemp -d "${TMPDIR:-/tmp}/sluice-notebooks.XXXXXX")"
  trap 'rm -rf "$out_root"' EXIT
fi

# The inline backend: plots become PNG outputs (Agg would draw nothing into the notebook).
export MPLBACKEND=module://matplotlib_inline.backend_inline
"$python" - "$write" "$out_root" "${notebooks[@]}" <<'PY'
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

write, out_root, paths = sys.argv[1] == "1", Path(sys.argv[2]), sys.argv[3:]
failed = []
for arg in paths:
    path = Path(arg).resolve()
    nb = nbformat.read(path, as_version=4)
    out = out_root / path.stem
    if out.exists():
        sys.exit(f"{out} exists: each notebook needs a fresh output folder")
    os.environ["SLUICE_NOTEBOOK_OUT"] = str(out)  # the kernel inherits it
    client = NotebookClient(
        nb,
        timeout=300,  # per cell
        kernel_name="python3",
        record_timing=False,  # no timestamps in the written notebook
        resources={"metadata": {"path": str(path.parent)}},  # run in the notebook's folder
    )
    start = time.monotonic()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        failed.append(path.name)
        print(f"FAIL {path.name}\n{e}", file=sys.stderr)
        continue
    print(f"ok   {path.name} ({len(nb.cells)} cells, {time.monotonic() - start:.1f}s)")
    if write:
        nbformat.write(nb, path)
        print(f"     wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")

print(f"{len(paths) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PY
