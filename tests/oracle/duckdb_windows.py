"""External oracle: the windowed aggregates of dataflows/learning_analytics.toml, computed with
DuckDB SQL from the same Parquet file, compared with sluice's Parquet outputs.

Usage: duckdb_windows.py EVENTS.parquet SLUICE_OUT_DIR [LATENESS_MS]
Exits 1 and prints the differences when any output disagrees.

Lateness, deduplication and the bot-blocking rule are recomputed in SQL: a row is late when its time is below the largest time of every
earlier row in the file minus the allowed lateness (file order is arrival order).
"""
import math
import sys

import duckdb

events, out = sys.argv[1], sys.argv[2]
lateness = int(sys.argv[3]) if len(sys.argv) > 3 else 120_000

# The pattern of the spec's `bot_detection` rule.
BOTS = "(?i)bot|curl/|python-requests"

con = duckdb.connect()
con.execute(f"""
create view raw as
  select *, epoch_ms(event_time) as t
  from read_parquet('{events}', file_row_number = true);
create view on_time as
  select * from (
    select *, max(t) over (order by file_row_number rows between unbounded preceding and 1 preceding) as seen
    from raw)
  where seen is null or t >= seen - {lateness};
-- The spec's dedup rules (the sample spans less than every TTL, so each key passes once: its
-- first occurrence in event time), then its bot-detection block rule.
create view deduped as
  select * from on_time
  qualify row_number() over (
    partition by event_type, case event_type
      when 'attempt' then client_attempt_id
      when 'placement' then placement_id
      else session_id end
    order by t, file_row_number) = 1;
create view kept as
  select * from deduped
  where not coalesce(regexp_matches(user_agent, '{BOTS}'), false);
""")


def win(size_ms):
    return f"(t // {size_ms}) * {size_ms}"


QUERIES = {
    "user_hourly_attempts": f"""
        select user_id, {win(3600000)} as ws, count(*) as attempts, avg(correct::int) as accuracy,
               avg(response_time_ms) as mean_response_ms, min(response_time_ms) as min_response_ms,
               max(response_time_ms) as max_response_ms
        from kept where event_type = 'attempt' group by all""",
    "user_daily_sessions": f"""
        select user_id, {win(86400000)} as ws,
               count(*) filter (where event_type = 'session_start') as sessions,
               count(distinct item_id) filter (where event_type = 'attempt') as distinct_items,
               sum(duration_ms) filter (where event_type = 'session_end') as total_session_ms
        from kept group by all""",
    "item_hourly_performance": f"""
        select item_id, {win(3600000)} as ws, count(*) as attempts, avg(correct::int) as accuracy,
               avg(response_time_ms) as mean_response_ms
        from kept where event_type = 'attempt' group by all""",
    "system_5min_metrics": f"""
        select event_type, {win(300000)} as ws, count(*) as events, count(distinct user_id) as users
        from kept group by all""",
    "jurisdiction_daily_stats": f"""
        select country, {win(86400000)} as ws, count(*) as events, count(distinct user_id) as distinct_users
        from kept group by all""",
}


def sluice_rows(name):
    """The output collection at the end: changelog rows whose diffs sum to a positive count."""
    cols = [c[0] for c in con.execute(f"describe select * from read_parquet('{out}/{name}/*.parquet')").fetchall()]
    keep = [c for c in cols if c not in ("window_end", "time", "diff")]
    sel = ", ".join(f'"{c}"' if c != "window_start" else "epoch_ms(window_start) as ws" for c in keep)
    grp = ", ".join(str(i + 1) for i in range(len(keep)))
    if "diff" in cols:
        q = f"select {sel} from read_parquet('{out}/{name}/*.parquet') group by {grp} having sum(diff) > 0"
    else:
        q = f"select {sel} from read_parquet('{out}/{name}/*.parquet')"
    return con.execute(q).fetchall()


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def key(row):
    return tuple("" if v is None else str(v) for v in row[:2])


failed = False
for name, sql in QUERIES.items():
    want = {key(r): r for r in con.execute(sql).fetchall()}
    got = {key(r): r for r in sluice_rows(name)}
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    wrong = [(want[k], got[k]) for k in want if k in got and not all(close(a, b) for a, b in zip(want[k], got[k]))][:5]
    status = "ok" if not (missing or extra or wrong) else "DIFFERS"
    print(f"{name}: {len(want)} windows from DuckDB, {len(got)} from sluice: {status}")
    if status != "ok":
        failed = True
        for k in missing:
            print("  only in DuckDB:", want[k])
        for k in extra:
            print("  only in sluice:", got[k])
        for w, g in wrong:
            print("  DuckDB:", w, "\n  sluice:", g)
sys.exit(1 if failed else 0)
