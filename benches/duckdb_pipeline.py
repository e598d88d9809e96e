"""DuckDB's side of `cargo bench --bench pipeline`: the default spec,
dataflows/learning_analytics.toml, as SQL over the same files, every output written to Parquet.

    python benches/duckdb_pipeline.py EVENTS.parquet CONTEXT_DIR THREADS OUT_DIR

The stages, as the spec has them: the 2-minute lateness bound (a row is late when its time is
below the largest time of the rows before it in the file, minus 2 minutes); deduplication per
event type and key with the spec's TTLs (a row is a duplicate when the key's previous row is
less than the TTL before it); as-of joins of `profiles` (every event) and `items` (attempts);
the derived fields; the bot rule (blocked), the two route rules (`premium_analytics`,
`onboarding`); the enriched output ordered by user and time; the five windowed aggregates.
sluice writes four of the aggregates as changelogs (`emit = "updates"`), which DuckDB cannot:
DuckDB writes their final rows. Prints the wall seconds of the whole script.
"""

import sys
import time

import duckdb

BOTS = "(?i)bot|curl/|python-requests"


def win(size_ms):
    return f"make_timestamp(((t // {size_ms}) * {size_ms}) * 1000) AS window_start"


STAGES = [
    # Lateness, then the dedup key and TTL of each event type.
    """CREATE TEMP TABLE on_time AS
       SELECT * EXCLUDE (seen),
              CASE event_type WHEN 'attempt' THEN client_attempt_id
                              WHEN 'placement' THEN placement_id ELSE session_id END AS dkey,
              CASE event_type WHEN 'attempt' THEN 86400000 WHEN 'placement' THEN 604800000
                              ELSE 43200000 END AS ttl
       FROM (SELECT *, epoch_ms(event_time) AS t,
                    max(epoch_ms(event_time)) OVER (ORDER BY file_row_number
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS seen
             FROM events)
       WHERE seen IS NULL OR t >= seen - 120000""",
    """CREATE TEMP TABLE marked AS
       SELECT *, coalesce(t - lag(t) OVER (PARTITION BY event_type, dkey ORDER BY t, file_row_number) < ttl,
                          false) AS dup
       FROM on_time""",
    "COPY (SELECT * EXCLUDE (dkey, ttl, dup, t, file_row_number) FROM marked WHERE dup) TO '{out}/duplicates.parquet' (FORMAT parquet)",
    # As-of joins and derived fields.
    """CREATE TEMP TABLE joined AS
       SELECT e.* EXCLUDE (dkey, ttl, dup),
              CASE WHEN p.user_id IS NOT NULL THEN {{'subscription': p.subscription, 'language': p.language,
                   'streak_days': p.streak_days, 'updated_at': p.updated_at}} END AS profile,
              CASE WHEN i.item_id IS NOT NULL AND e.event_type = 'attempt' THEN {{'difficulty': i.difficulty,
                   'popularity': i.popularity, 'expected_response_ms': i.expected_response_ms,
                   'updated_at': i.updated_at}} END AS item
       FROM (SELECT * FROM marked WHERE NOT dup) e
       ASOF LEFT JOIN profiles p ON e.user_id = p.user_id AND e.event_time >= p.updated_at
       ASOF LEFT JOIN items i ON e.item_id = i.item_id AND e.event_time >= i.updated_at""",
    f"""CREATE TEMP TABLE derived AS
       SELECT *,
              CASE WHEN response_time_ms < 1000 THEN 'rapid' WHEN response_time_ms < 5000 THEN 'quick'
                   WHEN response_time_ms < 15000 THEN 'normal' WHEN response_time_ms IS NOT NULL THEN 'slow'
              END AS response_category,
              CASE WHEN item.difficulty IS NULL THEN NULL
                   WHEN correct AND item.difficulty > 1 THEN 'above_level'
                   WHEN NOT correct AND item.difficulty < -1 THEN 'below_level' ELSE 'at_level' END AS difficulty_match,
              CASE WHEN hour(event_time) < 6 THEN 'night' WHEN hour(event_time) < 12 THEN 'morning'
                   WHEN hour(event_time) < 18 THEN 'afternoon' ELSE 'evening' END AS time_of_day,
              response_time_ms / item.expected_response_ms AS vs_expected,
              coalesce(regexp_matches(user_agent, '{BOTS}'), false) AS bot
       FROM joined""",
    "COPY (SELECT 'bot_detection' AS rule_id, event_time, event_type FROM derived WHERE bot) TO '{out}/blocked.parquet' (FORMAT parquet)",
    "CREATE TEMP VIEW kept AS SELECT * EXCLUDE (bot, file_row_number) FROM derived WHERE NOT bot",
    "COPY (SELECT * EXCLUDE (t) FROM kept ORDER BY user_id, t) TO '{out}/enriched.parquet' (FORMAT parquet)",
    "COPY (SELECT * EXCLUDE (t) FROM kept WHERE profile.subscription IN ('premium', 'family')) TO '{out}/premium_analytics.parquet' (FORMAT parquet)",
    "COPY (SELECT * EXCLUDE (t) FROM kept WHERE event_type = 'placement') TO '{out}/onboarding.parquet' (FORMAT parquet)",
    # The five aggregates.
    f"""COPY (SELECT user_id, {win(3600000)}, count(*) AS attempts, avg(correct::INT) AS accuracy,
               avg(response_time_ms) AS mean_response_ms, min(response_time_ms) AS min_response_ms,
               max(response_time_ms) AS max_response_ms
             FROM kept WHERE event_type = 'attempt' GROUP BY ALL) TO '{{out}}/user_hourly_attempts.parquet' (FORMAT parquet)""",
    f"""COPY (SELECT user_id, {win(86400000)},
               count(*) FILTER (WHERE event_type = 'session_start') AS sessions,
               count(DISTINCT item_id) FILTER (WHERE event_type = 'attempt') AS distinct_items,
               sum(duration_ms) FILTER (WHERE event_type = 'session_end') AS total_session_ms
             FROM kept GROUP BY ALL) TO '{{out}}/user_daily_sessions.parquet' (FORMAT parquet)""",
    f"""COPY (SELECT item_id, {win(3600000)}, count(*) AS attempts, avg(correct::INT) AS accuracy,
               avg(response_time_ms) AS mean_response_ms
             FROM kept WHERE event_type = 'attempt' GROUP BY ALL) TO '{{out}}/item_hourly_performance.parquet' (FORMAT parquet)""",
    f"""COPY (SELECT event_type, {win(300000)}, count(*) AS events, count(DISTINCT user_id) AS users
             FROM kept GROUP BY ALL) TO '{{out}}/system_5min_metrics.parquet' (FORMAT parquet)""",
    f"""COPY (SELECT country, {win(86400000)}, count(*) AS events, count(DISTINCT user_id) AS distinct_users
             FROM kept GROUP BY ALL) TO '{{out}}/jurisdiction_daily_stats.parquet' (FORMAT parquet)""",
]


def main():
    events, context, threads, out = sys.argv[1:5]
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{events}', file_row_number = true)")
    for table in ("profiles", "items"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{context}/{table}.parquet')")
    start = time.perf_counter()
    for stage in STAGES:
        con.execute(stage.format(out=out))
    print(f"{time.perf_counter() - start:.4f}")


if __name__ == "__main__":
    main()
