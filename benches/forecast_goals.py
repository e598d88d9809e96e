#!/usr/bin/env python3
"""The accuracy goals of the load forecasts (issue 12), measured with `sluice eval`.

    python3 benches/forecast_goals.py [--weeks 5] [--seed 7] [--warmup-days 7] [--spec SPEC]
                                      [--sluice BIN] [--data DIR]

1. `sluice generate regions` writes a `--weeks`-long scenario (3 regions) into `--data`
   (default bench-data/regions_goals/): load samples and FILE.truth.json.
2. `sluice eval SPEC --input load=... --from START+WARMUP --format json` scores every model of
   the spec (default dataflows/regional_load.toml) on the targets after the warm-up, by rolling
   origin (a forecast issued at t has seen only samples before t).
3. From its JSON rows and the truth file, per metric, over the 3 regions:
   - one-step RMSE of the ensemble (pooled: the root of the n-weighted mean square) divided by
     the generator's noise sigma (truth `noise.sigma`). Goal: at most 1.1.
   - mean MASE over horizons 1-12 (the mean over regions and horizons of each row's MASE) of
     the ensemble, of seasonal naive, and their ratio. Goal: at most 0.9.
   `floor` is the RMSE a forecaster that knew the noise-free load would still make on a step's
   mean: sigma times the standard deviation of the mean of the AR(1) noise over the reports of
   one step (reports every 15-60 s), which the script computes from the truth's `ar` and report
   interval. It says how far below sigma the goal's bar is at this step.

Only the Python standard library is used. The JSON rows are kept in --data/eval.json.
"""

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000


def sluice_cmd(arg):
    if arg:
        return [arg]
    built = REPO / "target" / "release" / "sluice"
    if built.exists():
        return [str(built)]
    if shutil.which("cargo"):
        return ["cargo", "run", "--release", "--quiet", "--"]
    sys.exit("no sluice: build it (cargo build --release) or pass --sluice")


def run(cmd):
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def noise_floor(ar, interval_ms, step_ms):
    """Standard deviation, in units of sigma, of the mean of a stationary AR(1) over the reports
    falling in one step (the report count taken as the step over the mean interval)."""
    n = max(1, round(step_ms / ((interval_ms[0] + interval_ms[1]) / 2)))
    var = sum(ar ** abs(i - j) for i in range(n) for j in range(n)) / n**2
    return math.sqrt(var)


def step_ms_of(spec):
    import tomllib

    with open(spec, "rb") as f:
        step = tomllib.load(f)["forecasts"][0]["step"]
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
    return int(step[:-1]) * units[step[-1]]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weeks", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--warmup-days", type=int, default=7)
    p.add_argument("--spec", default=str(REPO / "dataflows" / "regional_load.toml"))
    p.add_argument("--sluice")
    p.add_argument("--data", default=str(REPO / "bench-data" / "regions_goals"))
    args = p.parse_args()
    sluice = sluice_cmd(args.sluice)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    events = data / f"events_{args.weeks}w_{args.seed}.parquet"
    context = data / f"context_{args.weeks}w_{args.seed}"
    truth_path = Path(str(events) + ".truth.json")
    if not truth_path.exists():
        context.mkdir(exist_ok=True)
        run(sluice + ["generate", "regions", "--regions", "3", "--events", "1000", "--span",
                      f"{7 * args.weeks}d", "--seed", str(args.seed), "--out", str(events),
                      "--context", str(context), "--quiet"])
    truth = json.loads(truth_path.read_text())
    start = truth["start_ms"] + args.warmup_days * DAY_MS
    out = run(sluice + ["eval", args.spec, "--input", f"load={context / 'load_samples.parquet'}",
                        "--from", str(start), "--format", "json", "--quiet"])
    (data / "eval.json").write_text(out)
    rows = [json.loads(line)["row"] for line in out.splitlines() if line.strip()]
    if not rows:
        sys.exit("sluice eval printed no rows")

    sigma = truth["noise"]["sigma"]
    floor = noise_floor(truth["noise"]["ar"], truth["report_interval_ms"], step_ms_of(args.spec))
    print(f"regions scenario: {args.weeks} weeks, seed {args.seed}, 3 regions; "
          f"scored after day {args.warmup_days}; outage {truth['outage']['region']} "
          f"{truth['outage']['start']} .. {truth['outage']['end']}")
    print(f"{'metric':>13} {'sigma':>6} {'RMSE h=1':>9} {'/ sigma':>8} {'floor':>6} "
          f"{'MASE ens':>9} {'MASE snaive':>12} {'ratio':>6} {'MASE naive':>11}  goals")
    all_ok = True
    for metric in ["cpu", "memory", "queue_length", "latency_ms"]:
        def rows_of(model, h=None):
            return [r for r in rows if r["metric"] == metric and r["model"] == model
                    and (h is None or r["horizon"] == h) and r["n"]]

        one = rows_of("ensemble", 1)
        sq = sum(r["n"] * r["rmse"] ** 2 for r in one)
        rmse1 = math.sqrt(sq / sum(r["n"] for r in one))

        def mean_mase(model):
            values = [r["mase"] for r in rows_of(model) if r["horizon"] <= 12 and r["mase"] is not None]
            return sum(values) / len(values)

        ens, snaive, naive = mean_mase("ensemble"), mean_mase("seasonal_naive"), mean_mase("naive")
        ratio_rmse, ratio_mase = rmse1 / sigma[metric], ens / snaive
        ok = ratio_rmse <= 1.1 and ratio_mase <= 0.9
        all_ok &= ok
        print(f"{metric:>13} {sigma[metric]:>6.2f} {rmse1:>9.3f} {ratio_rmse:>8.2f} {floor:>6.2f} "
              f"{ens:>9.3f} {snaive:>12.3f} {ratio_mase:>6.2f} {naive:>11.3f}  "
              f"{'met' if ok else 'MISSED'}")
    print("goals: one-step RMSE / sigma <= 1.1 and MASE ensemble / seasonal naive <= 0.9 "
          f"({'all met' if all_ok else 'not all met'})")


if __name__ == "__main__":
    main()
