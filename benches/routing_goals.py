#!/usr/bin/env python3
"""The routing goals (issue 13), measured with `sluice eval` on a long `regions` scenario.

    python3 benches/routing_goals.py [--events 500000] [--days 35] [--seed 7] [--spec SPEC]
                                     [--sluice BIN] [--data DIR] [--window 15m]

1. `sluice generate regions` writes `--events` events over `--days` days (3 regions) into
   `--data` (default bench-data/regions_routing/): events, load samples, regions and
   events.parquet.truth.json.
2. `sluice eval SPEC --input events=... --input load=... --input regions=... --format json`
   (default spec dataflows/regional_routing.toml) runs the router over them and replays its
   decisions through the simulated regional queues, with the truth next to the events.
3. Prints the goals and the policies as Markdown tables (the README's), and keeps the JSON rows
   in --data/eval.json.

Only the Python standard library is used.
"""

import argparse
import json
import sys
from pathlib import Path

# The same sluice lookup and runner as the forecast goals (this script's folder is on the path).
from forecast_goals import REPO, run, sluice_cmd


def fmt(x):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "**met**" if x else "not met"
    if isinstance(x, float):
        return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.1f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def table(rows, columns):
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt(r[c]) for c in columns) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--spec", default="dataflows/regional_routing.toml")
    ap.add_argument("--sluice")
    ap.add_argument("--data", default=str(REPO / "bench-data" / "regions_routing"))
    ap.add_argument("--window", default="15m")
    args = ap.parse_args()
    sluice = sluice_cmd(args.sluice)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    events = data / "events.parquet"
    if not (data / "events.parquet.truth.json").exists():
        print(f"generating {args.events} events over {args.days} days into {data} ...", file=sys.stderr)
        run(sluice + ["generate", "regions", "--regions", "3", "--events", str(args.events),
                      "--span", f"{args.days}d", "--seed", str(args.seed), "--out", str(events),
                      "--context", str(data), "--quiet"])
    print(f"sluice eval {args.spec} ...", file=sys.stderr)
    out = run(sluice + ["eval", args.spec, "--input", f"events={events}",
                        "--input", f"load={data / 'load_samples.parquet'}",
                        "--input", f"regions={data / 'regions.parquet'}",
                        "--window", args.window, "--format", "json", "--quiet"])
    rows = [json.loads(line) for line in out.splitlines()]
    (data / "eval.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    by_table = {}
    for r in rows:
        by_table.setdefault(r["table"], []).append(r["row"])
    goals = next(v for k, v in by_table.items() if k.endswith("_goals"))
    policies = next(v for k, v in by_table.items() if k.endswith("_policies"))
    truth = json.loads((data / "events.parquet.truth.json").read_text())
    o = truth["outage"]
    print(f"{args.events} events over {args.days} days, seed {args.seed}; outage {o['region']} "
          f"{o['start']} .. {o['end']}; {len(truth['spikes'])} spikes\n")
    table(goals, ["goal", "target", "sluice", "baseline", "baseline_value", "ratio", "met"])
    print()
    table(policies, ["policy", "keys_moved", "shard_moves", "imbalance_mean", "imbalance_p95",
                     "p95_1_3_spikes_ms", "p95_1_3_outage_ms", "p95_all_ms"])


if __name__ == "__main__":
    main()
