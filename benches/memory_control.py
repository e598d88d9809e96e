"""The inputs of `cargo bench --bench memory` (benches/memory.rs), written with DuckDB.

    memory_control.py EVENTS TIME_FIELD PREFIX_ROWS OUT_DIR CONTEXT:KEY:TIME [CONTEXT:KEY:TIME ...]

Writes to OUT_DIR:
- `prefix.parquet`: the first PREFIX_ROWS rows of EVENTS, in file order (arrival order), with
  EVENTS' row-group size;
- for each context table, in the order given, a file of the same name holding its latest row
  per KEY, every row timed before the log (TIME set to the prefix's earliest TIME_FIELD minus
  one day). A join then holds every context key from the first event on, so a run's memory does
  not grow with the keys that appear later in the log: what is left to grow is what grows with
  the events.
"""

import os
import sys

import duckdb


def main() -> None:
    events, time_field, prefix_rows, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    group = con.execute(
        f"SELECT max(row_group_num_rows) FROM parquet_metadata('{events}')"
    ).fetchone()[0]
    con.execute(
        f"COPY (SELECT * FROM '{events}' LIMIT {prefix_rows}) TO '{out}/prefix.parquet' "
        f"(FORMAT parquet, ROW_GROUP_SIZE {group}, COMPRESSION zstd)"
    )
    start = con.execute(
        f"SELECT min({time_field}) - INTERVAL 1 DAY FROM '{out}/prefix.parquet'"
    ).fetchone()[0]
    for spec in sys.argv[5:]:
        path, key, time = spec.rsplit(":", 2)
        name = os.path.basename(path)
        con.execute(
            f"""COPY (
                SELECT * EXCLUDE (latest) REPLACE (TIMESTAMPTZ '{start.isoformat()}' AS {time})
                FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {time} DESC) AS latest
                      FROM '{path}')
                WHERE latest = 1
                ORDER BY {key}
            ) TO '{out}/{name}' (FORMAT parquet)"""
        )
        keys = con.execute(f"SELECT count(*) FROM '{out}/{name}'").fetchone()[0]
        print(f"{name}: {keys} keys")


if __name__ == "__main__":
    main()
