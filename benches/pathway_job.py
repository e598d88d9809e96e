"""Pathway's side of benches/pathway_compare.py: benches/specs/pathway_job.toml in Pathway.

    python benches/pathway_job.py EVENTS.parquet PROFILES.parquet OUT_DIR
    python benches/pathway_job.py --import-only     (start-up cost alone)

Every event joined as of its time with the user's profile (`asof_join_left`, the profile at or
before the event), a 1-minute tumbling window per region over the attempts (count, sum, min, max
of `response_time_ms`) and a 1-minute window per subscription over the joined events (count);
the three tables written as CSV. Times are epoch milliseconds, windows aligned to the epoch,
as in sluice.
"""

import sys

import pathway as pw

if sys.argv[1:] == ["--import-only"]:
    sys.exit(0)

import pandas as pd  # noqa: E402

events_path, profiles_path, out = sys.argv[1:4]
ev = pd.read_parquet(events_path, columns=["event_time", "event_type", "user_id", "region",
                                           "response_time_ms"])
ev["t"] = ev.event_time.dt.as_unit("ms").astype("int64")
ev = ev.drop(columns=["event_time"])
pr = pd.read_parquet(profiles_path, columns=["user_id", "updated_at", "subscription"])
pr["t"] = pr.updated_at.dt.as_unit("ms").astype("int64")
pr = pr.drop(columns=["updated_at"])

E = pw.debug.table_from_pandas(ev)
P = pw.debug.table_from_pandas(pr)
J = pw.temporal.asof_join_left(E, P, E.t, P.t, E.user_id == P.user_id).select(
    t=E.t, event_type=E.event_type, user_id=E.user_id, region=E.region,
    response_time_ms=E.response_time_ms, subscription=P.subscription)
A = E.filter(E.event_type == "attempt")
W = A.windowby(A.t, window=pw.temporal.tumbling(duration=60_000), instance=A.region).reduce(
    region=pw.this._pw_instance, window_start=pw.this._pw_window_start,
    n=pw.reducers.count(),
    s=pw.reducers.sum(pw.coalesce(pw.this.response_time_ms, 0.0)),
    mn=pw.reducers.min(pw.coalesce(pw.this.response_time_ms, float("inf"))),
    mx=pw.reducers.max(pw.coalesce(pw.this.response_time_ms, float("-inf"))))
S = J.windowby(J.t, window=pw.temporal.tumbling(duration=60_000), instance=J.subscription).reduce(
    sub=pw.this._pw_instance, window_start=pw.this._pw_window_start, n=pw.reducers.count())
pw.io.csv.write(W, f"{out}/region_minute.csv")
pw.io.csv.write(S, f"{out}/subscription_minute.csv")
pw.io.csv.write(J, f"{out}/joined.csv")
pw.run(monitoring_level=pw.MonitoringLevel.NONE)
