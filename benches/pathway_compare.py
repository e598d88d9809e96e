#!/usr/bin/env python3
"""sluice beside Pathway, an incremental engine, on the same job and the same files.

    python3 benches/pathway_compare.py [--events N] [--seed S] [--sluice BIN] [--data DIR]

1. `tests/setup-python.sh --pathway` installs Pathway (and pandas) into .venv/.
2. `sluice generate learning --events N --context DIR` writes the log and its profiles under
   --data (default bench-data/pathway/), once per size and seed.
3. The job (benches/specs/pathway_job.toml): every event joined as of its time with the user's
   profile, a 1-minute tumbling window per region over the attempts (count, sum, min, max of
   the response time) and a 1-minute window per subscription over the joined events (count),
   every output written. sluice runs the spec (`sluice run --input ... --out DIR`, 1 worker);
   Pathway runs the same dataflow in its Python API (`pathway_job.py` beside this script:
   `asof_join_left`, `windowby` with `tumbling`, CSV sinks, `pw.run`), 1 thread.
4. Each engine runs as a child process; its wall time and CPU time (user + system, from
   `getrusage` of the child) are measured. Events per second per core = events / CPU seconds.
   The figure of merit is sluice per core ÷ Pathway per core (the issue's goal: at least 10).
   The window counts of both are compared, so both did the same work.

Pathway's CPU time includes starting Python and importing Pathway (about 2 s, printed
separately from an empty run) and reading the Parquet files into pandas; sluice's includes
reading them with arrow-rs. Pathway writes only the joined columns it selects, sluice every
column of every event (`enriched`): the comparison is conservative for sluice.
"""

import argparse
import csv
import glob
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from forecast_goals import REPO, sluice_cmd


def timed(cmd, **kw):
    """Run `cmd`; return (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def counts_sluice(out, name, key):
    """{(key, window start ms): count} of a sluice output (Parquet parts), via pyarrow."""
    import pyarrow.parquet as pq

    result = {}
    for part in sorted(glob.glob(str(out / name / "*.parquet"))):
        t = pq.read_table(part).to_pydict()
        for k, start, n in zip(t[key], t["window_start"], t["n"]):
            ms = int(start.timestamp() * 1000) if hasattr(start, "timestamp") else int(start)
            result[(k, ms)] = result.get((k, ms), 0) + n
    return result


def counts_pathway(path, key):
    result = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            k = (row[key], int(row["window_start"]))
            result[k] = result.get(k, 0) + int(row["n"]) * int(row["diff"])
    return {k: v for k, v in result.items() if v}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sluice")
    p.add_argument("--data", default=str(REPO / "bench-data" / "pathway"))
    args = p.parse_args()
    sluice = sluice_cmd(args.sluice)
    python = subprocess.run([str(REPO / "tests" / "setup-python.sh"), "--pathway"], check=True,
                            capture_output=True, text=True).stdout.strip()
    if Path(sys.prefix).resolve() != Path(python).parent.parent.resolve():
        # pyarrow, to read sluice's outputs, is in the venv.
        os.execv(python, [python, __file__, *sys.argv[1:]])
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    events = data / f"learning_{args.events}_{args.seed}.parquet"
    context = data / f"context_{args.events}_{args.seed}"
    if not events.exists():
        context.mkdir(exist_ok=True)
        subprocess.run(sluice + ["generate", "learning", "--events", str(args.events), "--seed",
                                 str(args.seed), "--out", str(events), "--context", str(context),
                                 "--quiet"], check=True, cwd=REPO)
    profiles = context / "profiles.parquet"

    out_s = data / "out_sluice"
    out_p = data / "out_pathway"
    for d in (out_s, out_p):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    spec = REPO / "benches" / "specs" / "pathway_job.toml"
    job = REPO / "benches" / "pathway_job.py"
    env = dict(os.environ, PATHWAY_THREADS="1")
    s_wall, s_cpu = timed(sluice + ["run", str(spec), "--input", f"events={events}", "--input",
                                    f"profiles={profiles}", "--out", str(out_s), "--quiet"])
    p_wall, p_cpu = timed([python, str(job), str(events), str(profiles), str(out_p)], env=env)
    i_wall, i_cpu = timed([python, str(job), "--import-only"], env=env)

    region_s = counts_sluice(out_s, "region_minute", "region")
    region_p = counts_pathway(out_p / "region_minute.csv", "region")
    sub_s = counts_sluice(out_s, "subscription_minute", "sub")
    sub_p = counts_pathway(out_p / "subscription_minute.csv", "sub")

    def agree(a, b):
        keys = set(a) | set(b)
        same = sum(1 for k in keys if a.get(k) == b.get(k))
        return f"{same} of {len(keys)} windows equal; counts {sum(a.values())} vs {sum(b.values())}"

    n = args.events
    rate_s, rate_p = n / s_cpu, n / p_cpu
    print(f"{n} events, seed {args.seed}, 1 worker / 1 thread")
    print(f"{'engine':>8} {'wall s':>8} {'CPU s':>8} {'events/s per core':>18}")
    print(f"{'sluice':>8} {s_wall:>8.2f} {s_cpu:>8.2f} {rate_s:>18,.0f}")
    print(f"{'pathway':>8} {p_wall:>8.2f} {p_cpu:>8.2f} {rate_p:>18,.0f}")
    print(f"Pathway's start-up alone (python, import pathway): {i_wall:.2f} s wall, {i_cpu:.2f} s CPU; "
          f"without it: {n / max(p_cpu - i_cpu, 1e-9):,.0f} events/s per core")
    print(f"sluice per core / Pathway per core: {rate_s / rate_p:.1f} (goal >= 10)")
    print(f"region_minute: {agree(region_s, region_p)}")
    print(f"subscription_minute: {agree(sub_s, sub_p)}")
    print("(sluice drops events later than the spec's 2-minute lateness bound as dead letters; "
          "Pathway, in batch, keeps them: the counts differ by those.)")


if __name__ == "__main__":
    main()
