"""DuckDB side of the enrichment benchmark (benches/enrich.rs), with DuckDB from
tests/setup-python.sh.

  duckdb_enrich.py prepare UPLOADS GEO DIR
      Untimed preparation: DIR/uploads_ip.parquet (event_time, user_id, ip) and DIR/geo_ip.parquet
      (first, last, country, city, latitude, longitude, updated_at), where `ip`, `first` and
      `last` are UHUGEINT addresses on sluice's one line (IPv4 as ::ffff:a.b.c.d). DuckDB's inet
      extension needs the network, so Python's `ipaddress` parses each distinct address once.
  duckdb_enrich.py run DIR PROFILES THREADS RUNS
      Timed: every upload with its profile as of its event time (ASOF JOIN on user_id and time)
      and its geo range (ASOF JOIN on the address, then `ip <= last`), read from Parquet, with
      THREADS threads. Prints the best wall time of RUNS runs in seconds, the result rows, the
      profile hits and the geo hits.
  duckdb_enrich.py keys UPLOADS
      The number of distinct (event_type, upload_id) keys.
"""
import csv
import ipaddress
import os
import sys
import time

import duckdb


def ip_number(text):
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (0xFFFF << 32) | int(addr) if addr.version == 4 else int(addr)


def connect(threads=2):
    con = duckdb.connect()
    con.execute(f"set threads = {threads}")
    con.execute("set enable_progress_bar = false")
    return con


def prepare(uploads, geo, out):
    con = connect()
    os.makedirs(out, exist_ok=True)
    numbers = os.path.join(out, "ip_numbers.csv")
    with open(numbers, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ip", "n"])
        for (ip,) in con.execute(f"select distinct uploader_ip from read_parquet('{uploads}')").fetchall():
            n = ip_number(ip)
            writer.writerow([ip, "" if n is None else n])
    con.execute(f"""
        copy (select u.event_time, u.user_id, n.n as ip
              from read_parquet('{uploads}') u
              left join read_csv('{numbers}', columns = {{'ip': 'VARCHAR', 'n': 'UHUGEINT'}}, header = true) n
                on u.uploader_ip = n.ip)
        to '{out}/uploads_ip.parquet' (format parquet)""")
    os.remove(numbers)
    with open(numbers, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cidr", "first", "last"])
        for (cidr,) in con.execute(f"select cidr from read_parquet('{geo}')").fetchall():
            net = ipaddress.ip_network(cidr, strict=False)
            first = ip_number(str(net.network_address))
            writer.writerow([cidr, first, first + net.num_addresses - 1])
    con.execute(f"""
        copy (select r.first, r.last, g.country, g.city, g.latitude, g.longitude, g.updated_at
              from read_parquet('{geo}') g
              join read_csv('{numbers}', columns = {{'cidr': 'VARCHAR', 'first': 'UHUGEINT', 'last': 'UHUGEINT'}},
                            header = true) r using (cidr)
              order by r.first)
        to '{out}/geo_ip.parquet' (format parquet)""")
    os.remove(numbers)


def run(prepared, profiles, threads, runs):
    con = connect(threads)
    query = f"""
        with with_profile as (
          select e.event_time, e.ip, p.subscription, p.language
          from read_parquet('{prepared}/uploads_ip.parquet') e
          asof left join read_parquet('{profiles}') p
            on e.user_id = p.user_id and e.event_time >= p.updated_at),
        enriched as (
          select e.*, case when e.ip <= g.last then g.country end as country,
                 case when e.ip <= g.last then g.city end as city
          from with_profile e
          asof left join read_parquet('{prepared}/geo_ip.parquet') g on e.ip >= g.first)
        select count(*), count(subscription), count(country) from enriched"""
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = con.execute(query).fetchone()
        best = min(best, time.perf_counter() - started)
    print(f"{best:.4f} {result[0]} {result[1]} {result[2]}")


def keys(uploads):
    con = connect()
    n = con.execute(f"select count(distinct (event_type, upload_id)) from read_parquet('{uploads}')").fetchone()[0]
    print(n)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "prepare":
        prepare(*args)
    elif command == "run":
        run(args[0], args[1], int(args[2]), int(args[3]))
    elif command == "keys":
        keys(*args)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
