#!/usr/bin/env python3
"""The load forecasts on real metric series: geometric-mean MASE against seasonal naive.

    python3 benches/forecast_real.py DIR [DIR...] [--step 5m] [--period 1d] [--warmup-days 3]
                                     [--models ets,mstl,ar] [--spec-extra TOML] [--sluice BIN]
                                     [--data DIR]

Each DIR holds CSV files of one series each, `timestamp,value` with a header and times as
`YYYY-MM-DD HH:MM:SS` (the layout of the Numenta Anomaly Benchmark's `data/real*/` folders,
MIT-licensed: CloudWatch CPU, network and request counts at 5-minute steps). The series are not
in this repository; the README says where the figures came from.

1. Every series is moved by whole days so that all start in one day (the time of day is kept,
   so a daily period stays where it was; weekdays move), and written as one CSV,
   `time,series,value`, under --data. The warm-up is then the same for every series.
2. A `[[forecasts]]` spec keyed by `series` (step, one period, horizon 12, the models asked
   for; the defaults otherwise) runs under `sluice eval ... --from START+WARMUP --format json`:
   rolling origin, one origin per step, no leakage.
3. Per series and model: the mean MASE over horizons 1-12 and its ratio to seasonal naive's on
   the same targets. Over the series: the geometric mean of those ratios per model, and, for
   the ensemble, its worst ratio to naive on any one series.

The issue's bar: AutoETS (statsforecast, batch) reaches about 0.70 of seasonal naive on such
series and naive about 0.73; the ensemble should reach 0.65 and never be much worse than naive
on any one series. Only the Python standard library is used.
"""

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

from forecast_goals import DAY_MS, REPO, run, sluice_cmd


def read_series(path):
    rows = []
    with open(path) as f:
        header = f.readline()
        if not header.startswith("timestamp"):
            sys.exit(f"{path}: expected a `timestamp,value` header")
        for line in f:
            ts, value = line.strip().split(",")
            t = dt.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
            rows.append((int(t.timestamp() * 1000), value))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--step", default="5m")
    p.add_argument("--period", default="1d")
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--warmup-days", type=float, default=3)
    p.add_argument("--models", default="ets,mstl,ar")
    p.add_argument("--spec-extra", default="", help="more TOML lines for the [[forecasts]] entry")
    p.add_argument("--sluice")
    p.add_argument("--data", default=str(REPO / "bench-data" / "real_series"))
    p.add_argument("--details", action="store_true", help="print every series")
    args = p.parse_args()
    sluice = sluice_cmd(args.sluice)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)

    series = {}
    for d in args.dirs:
        for path in sorted(Path(d).glob("*.csv")):
            series[path.stem] = read_series(path)
    if not series:
        sys.exit("no CSV series found")
    base = min(rows[0][0] for rows in series.values())
    base -= base % DAY_MS
    merged = []
    for name, rows in series.items():
        shift = (rows[0][0] - base) // DAY_MS * DAY_MS
        merged.extend((t - shift, name, v) for t, v in rows)
    merged.sort()
    start = min(t for t, _, _ in merged)
    csv = (data / "series.csv").resolve()
    with open(csv, "w") as f:
        f.write("time,series,value\n")
        for t, name, v in merged:
            f.write(f"{t},{name},{v}\n")

    models = ", ".join(f'"{m}"' for m in args.models.split(",") if m)
    spec = data / "spec.toml"
    spec.write_text(f"""[pipeline]
name = "real_series"
tick = "1s"

[sources.metrics]
path = "{csv}"
time_field = "time"
time_unit = "ms"
columns = {{ value = "float", series = "string" }}

[[forecasts]]
name = "real"
source = "metrics"
keys = ["series"]
values = ["value"]
step = "{args.step}"
periods = ["{args.period}"]
horizon = {args.horizon}
models = [{models}]
{args.spec_extra}
""")
    cmd = sluice + ["eval", str(spec), "--from", str(int(start + args.warmup_days * DAY_MS)),
                    "--format", "json", "--quiet"]
    stdout = run(cmd)
    (data / "eval.json").write_text(stdout)
    rows = [json.loads(line)["row"] for line in stdout.splitlines() if line.strip()]
    rows = [r for r in rows if "mase" in r]

    # mean MASE over horizons per (series, model)
    per = {}
    for r in rows:
        if r["mase"] is None or not r["n"] or r["horizon"] > args.horizon:
            continue
        per.setdefault((r["series"], r["model"]), []).append(r["mase"])
    mase = {k: sum(v) / len(v) for k, v in per.items()}
    names = sorted({s for s, _ in mase})
    model_names = sorted({m for _, m in mase}, key=lambda m: (m != "ensemble", m))

    def ratio(s, m, to):
        a, b = mase.get((s, m)), mase.get((s, to))
        return a / b if a is not None and b and a > 0 else None

    if args.details:
        print(f"{'series':>45} " + " ".join(f"{m:>14}" for m in model_names))
        for s in names:
            print(f"{s:>45} " + " ".join(
                f"{ratio(s, m, 'seasonal_naive') or float('nan'):>14.3f}" for m in model_names))
    print(f"{len(names)} series, step {args.step}, period {args.period}, horizons 1-{args.horizon}, "
          f"scored after day {args.warmup_days}")
    print(f"{'model':>16} {'geo-mean MASE / seasonal naive':>31} {'geo-mean / naive':>17} "
          f"{'worst / naive':>14}  worst series")
    for m in model_names:
        rs = [x for x in (ratio(s, m, "seasonal_naive") for s in names) if x]
        rn = [(x, s) for x, s in ((ratio(s, m, "naive"), s) for s in names) if x]
        geo = math.exp(sum(map(math.log, rs)) / len(rs)) if rs else float("nan")
        geo_n = math.exp(sum(math.log(x) for x, _ in rn) / len(rn)) if rn else float("nan")
        worst, worst_series = max(rn, default=(float("nan"), ""))
        print(f"{m:>16} {geo:>31.3f} {geo_n:>17.3f} {worst:>14.3f}  {worst_series}")


if __name__ == "__main__":
    main()
