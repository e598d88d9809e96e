"""DuckDB's side of `cargo bench --bench nexmark`: runs one Nexmark query's SQL
(`dataflows/nexmark/qN.sql`) on the generated files and writes its result to Parquet, as sluice
writes its output, with a given number of threads. Prints the best wall seconds of RUNS runs.

    python benches/nexmark_duckdb.py DATA_DIR QUERY.sql THREADS RUNS OUT.parquet
"""

import sys
import time

import duckdb


def main():
    data, sql_file, threads, runs, out = sys.argv[1:6]
    sql = open(sql_file).read()
    # Comment lines would swallow the closing parenthesis of COPY.
    sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    best = float("inf")
    for _ in range(int(runs)):
        con = duckdb.connect()
        con.execute(f"SET threads = {int(threads)}")
        for table in ("person", "auction", "bid", "side_input"):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data}/{table}.parquet')")
        start = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
        best = min(best, time.perf_counter() - start)
        con.close()
    print(f"{best:.4f}")


if __name__ == "__main__":
    main()
