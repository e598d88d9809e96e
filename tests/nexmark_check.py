"""Checks one Nexmark query's sluice output against DuckDB running the query's SQL.

    python tests/nexmark_check.py DATA_DIR OUT_DIR QUERY.sql OUTPUT_NAME

DATA_DIR holds `sluice generate nexmark`'s person, auction and bid Parquet files, seen by the
SQL as the tables `person`, `auction` and `bid`. OUT_DIR is `sluice run --out`'s folder. The
output's current contents (rows summed by `diff` when it is a changelog) must equal the SQL's
rows as a multiset, on the SQL's columns. Floats are compared to 9 significant digits and
timestamps as epoch milliseconds. Prints the row count, or the differences and exits 1.
"""

import sys

import duckdb


def normalised(con, relation, columns, types):
    out = []
    for c in columns:
        t = types[c].upper()
        q = f'"{c}"'
        if t in ("DOUBLE", "FLOAT") or t.startswith("DECIMAL"):
            out.append(f"round({q}::DOUBLE / 10 ** floor(log10(abs({q}::DOUBLE) + 1e-300)), 8) AS {q}")
        elif t.startswith("TIMESTAMP"):
            out.append(f"epoch_ms({q}) AS {q}")
        else:
            out.append(q)
    return ", ".join(out)


def main():
    data, out, sql_file, name = sys.argv[1:5]
    con = duckdb.connect()
    for table in ("person", "auction", "bid", "side_input"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data}/{table}.parquet')")
    sql = open(sql_file).read()
    con.execute(f"CREATE TABLE expected AS {sql}")
    expected_types = {r[0]: r[1] for r in con.execute("DESCRIBE expected").fetchall()}
    columns = list(expected_types)
    con.execute(f"CREATE VIEW got AS SELECT * FROM read_parquet('{out}/{name}/*.parquet', union_by_name = true)")
    got_types = {r[0]: r[1] for r in con.execute("DESCRIBE got").fetchall()}
    missing = [c for c in columns if c not in got_types]
    if missing:
        print(f"{name}: columns {missing} missing; the output has {sorted(got_types)}")
        sys.exit(1)
    diff = "diff" if "diff" in got_types else "1"
    e = normalised(con, "expected", columns, expected_types)
    g = normalised(con, "got", columns, got_types)
    keys = ", ".join(f'"{c}"' for c in columns)
    con.execute(f"CREATE TABLE e AS SELECT {keys}, count(*) AS n FROM (SELECT {e} FROM expected) GROUP BY ALL")
    con.execute(
        f"CREATE TABLE g AS SELECT {keys}, sum({diff})::BIGINT AS n FROM (SELECT {g}, {diff} AS {diff if diff == 'diff' else 'one'} FROM got) GROUP BY ALL HAVING sum({diff}) <> 0"
        if diff == "diff"
        else f"CREATE TABLE g AS SELECT {keys}, count(*) AS n FROM (SELECT {g} FROM got) GROUP BY ALL"
    )
    only_expected = con.execute("SELECT * FROM e EXCEPT SELECT * FROM g ORDER BY ALL LIMIT 10").fetchall()
    only_got = con.execute("SELECT * FROM g EXCEPT SELECT * FROM e ORDER BY ALL LIMIT 10").fetchall()
    rows = con.execute("SELECT coalesce(sum(n), 0) FROM e").fetchone()[0]
    if only_expected or only_got:
        print(f"{name}: {rows} expected rows; differences (columns {columns} and the count):")
        for r in only_expected:
            print("  only in DuckDB:", r)
        for r in only_got:
            print("  only in sluice:", r)
        sys.exit(1)
    print(rows)


if __name__ == "__main__":
    main()
