"""DuckDB side of the window benchmark: the one-minute x region query with count, sum, avg, min,
max and count distinct over a Parquet file, with 2 threads. Prints the best wall time of N runs
in seconds and the number of result rows. Usage: duckdb_window.py FILE [RUNS]"""
import sys
import time

import duckdb

path = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
con = duckdb.connect()
con.execute("set threads = 2")
query = f"""
select region, (epoch_ms(event_time) // 60000) * 60000 as window_start,
       count(*), sum(response_time_ms), avg(response_time_ms),
       min(response_time_ms), max(response_time_ms), count(distinct user_id)
from read_parquet('{path}') group by all"""
best = float("inf")
rows = 0
for _ in range(runs):
    t = time.perf_counter()
    rows = len(con.execute(query).fetchall())
    best = min(best, time.perf_counter() - t)
print(f"{best:.4f} {rows}")
