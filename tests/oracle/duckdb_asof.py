"""External oracle for the enrichment stage: as-of joins recomputed with DuckDB's ASOF JOIN (and,
for IP ranges, Python's `ipaddress` and bisect) from the same Parquet files, compared with every
row of sluice's `enriched` output.

Usage: duckdb_asof.py SPEC_NAME SLUICE_OUT_DIR DATA...
  learning_analytics    DATA = EVENTS PROFILES ITEMS
  payload_augmentation  DATA = UPLOADS GEO PROFILES SENSORS PRICES
Prints one line per check, ending in `: ok` or followed by the differences; exits 1 when any
check differs.

As-of semantics (src/render/enrich.rs): an event sees, per key, the latest on-time context row
whose time is at or before its event time (ASOF JOIN ... on key = key and t >= t); with
`max_age`, a row older than that at the event's time is not attached. The attached struct holds
the join's fields (all but the key when the spec names none) and the context's time column.

The rows sluice should enrich are recomputed too: on time (a row is late when its time is below
the largest time of every earlier row of its file minus the allowed lateness), deduplicated
(each key passes once, at its first occurrence in event time: the samples span less than every
TTL), and not blocked by the spec's rules.
"""
import bisect
import ipaddress
import math
import os
import sys
from dataclasses import dataclass, field

import duckdb


@dataclass
class Join:
    alias: str
    context: str  # a view name, set up by `context_view`
    event_key: str
    context_key: str
    time: str  # the context's time column
    fields: list = field(default_factory=list)  # empty: every column but the key and time
    max_age_ms: int | None = None
    types: list = field(default_factory=list)  # empty: every event type


con = duckdb.connect()
failed = False


def report(name, detail, differences, count=None):
    """Prints a check's line and its first differences (`count` of them in all)."""
    global failed
    count = len(differences) if count is None else count
    status = "ok" if not count else f"DIFFERS ({count})"
    print(f"{name}: {detail}: {status}")
    if differences:
        failed = True
        for d in differences[:5]:
            print("  ", d)


def on_time_view(name, path, time_col, lateness_ms):
    """`name`: the rows of `path` that are not late, with `t` (epoch ms) and `row` (file order)."""
    con.execute(f"""
        create view {name} as
        select * exclude (seen) from (
          select *, epoch_ms("{time_col}") as t, file_row_number as row,
                 max(epoch_ms("{time_col}")) over (
                   order by file_row_number rows between unbounded preceding and 1 preceding) as seen
          from read_parquet('{path}', file_row_number = true))
        where seen is null or t >= seen - {lateness_ms}""")


def enriched_view(out):
    """`enriched`: sluice's output, every part, with `t`, the part file and the row in it."""
    con.execute(f"""
        create view enriched as
        select *, epoch_ms(event_time) as t
        from read_parquet('{out}/enriched/*.parquet', union_by_name = true, filename = true,
                          file_row_number = true)""")
    return {c for (c, *_) in con.execute("describe enriched").fetchall()}


def context_fields(join):
    if join.fields:
        return list(join.fields)
    cols = [c for (c, *_) in con.execute(f"describe {join.context}").fetchall()]
    return [c for c in cols if c not in (join.context_key, join.time, "t", "row", "file_row_number")]


def struct_fields(column):
    """The field names of struct column `column` of `enriched`."""
    kind = con.execute(f'select typeof("{column}") from enriched limit 1').fetchone()[0]
    return sorted(f.strip().split(" ")[0].strip('"') for f in kind[len("STRUCT(") : -1].split(","))


def check_join(join, key_expr, columns):
    """Every enriched row's `join.alias` struct against DuckDB's ASOF JOIN."""
    fields = context_fields(join)
    name = f"{join.alias} (as-of {join.context}"
    name += f", max_age {join.max_age_ms // 1000}s)" if join.max_age_ms else ")"
    if join.alias not in columns:
        report(name, "no such column in enriched", ["sluice attached no row at all"])
        return
    want_fields = sorted(fields + [join.time])
    if struct_fields(join.alias) != want_fields:
        report(name, "struct fields", [f"sluice {struct_fields(join.alias)}, expected {want_fields}"])
        return
    relevant = "true"
    if join.types:
        relevant = "e.event_type in (" + ", ".join(f"'{t}'" for t in join.types) + ")"
    fresh = f"e.t - c.t <= {join.max_age_ms}" if join.max_age_ms is not None else "true"
    hit = f"c.t is not null and {relevant} and {fresh}"
    mismatch = " or ".join(
        [f'e."{join.alias}"."{f}" is distinct from c."{f}"' for f in fields]
        + [f'epoch_ms(e."{join.alias}"."{join.time}") is distinct from c.t']
    )
    want = ", ".join(f"'{f}': c.\"{f}\"" for f in fields)
    con.execute(f"""
        create or replace temp table expected as
        select {key_expr} as key, e.event_time, e."{join.alias}" as got, ({hit}) as hit,
               case when {hit} then {{{want}, '{join.time}': c."{join.time}"}} end as want,
               coalesce({mismatch}, false) as mismatch
        from enriched e asof left join {join.context} c
          on e."{join.event_key}" = c."{join.context_key}" and e.t >= c.t""")
    total, hits = con.execute("select count(*), count(*) filter (where hit) from expected").fetchone()
    wrong = "(got is null) != (not hit) or (hit and mismatch)"
    count = con.execute(f"select count(*) from expected where {wrong}").fetchone()[0]
    sample = con.execute(f"select key, event_time, got, want from expected where {wrong} limit 5").fetchall()
    diffs = [f"{k} at {t}: sluice {got}, expected {want}" for (k, t, got, want) in sample]
    report(name, f"{total} enriched rows, {hits} hits expected", diffs, count)


def check_rows(kept_keys_sql, key_expr):
    """The enriched rows are exactly the on-time, deduplicated, unblocked events."""
    only_want = con.execute(
        f"select * from ({kept_keys_sql}) except all select {key_expr} from enriched order by all limit 5"
    ).fetchall()
    only_got = con.execute(
        f"select {key_expr} from enriched except all select * from ({kept_keys_sql}) order by all limit 5"
    ).fetchall()
    want = con.execute(f"select count(*) from ({kept_keys_sql})").fetchone()[0]
    got = con.execute("select count(*) from enriched").fetchone()[0]
    diffs = [f"only in DuckDB: {k}" for k in only_want] + [f"only in sluice: {k}" for k in only_got]
    if want != got:
        diffs.insert(0, f"sluice has {got} rows, DuckDB keeps {want}")
    report("enriched rows", f"{got} from sluice, {want} kept by DuckDB (lateness, dedup, rules)", diffs)


def check_order(order_key):
    """Ordered delivery: per key, event time never decreases across the parts, in part order."""
    parts = con.execute("select count(distinct filename) from enriched").fetchone()[0]
    rows = con.execute(f"""
        select "{order_key}", prev, t from (
          select "{order_key}", t, lag(t) over (
            partition by "{order_key}" order by filename, file_row_number) as prev
          from enriched)
        where t < prev order by all limit 5""").fetchall()
    diffs = [f"{order_key} {k}: {t} after {p}" for (k, p, t) in rows]
    report("ordered delivery", f"event time per {order_key} over {parts} part(s)", diffs)


def learning(out, events, profiles, items):
    on_time_view("events", events, "event_time", 120_000)
    on_time_view("profiles", profiles, "updated_at", 120_000)
    on_time_view("items", items, "updated_at", 120_000)
    key = """(event_type, case event_type when 'attempt' then client_attempt_id
                when 'placement' then placement_id else session_id end)"""
    # Dedup per (type, key), then the `bot_detection` block rule, the first rule.
    kept = f"""
        select key from (
          select {key} as key, user_agent from events
          qualify row_number() over (partition by {key} order by t, row) = 1)
        where not coalesce(regexp_matches(user_agent, '(?i)bot|curl/|python-requests'), false)"""
    columns = enriched_view(out)
    check_rows(kept, key)
    check_join(Join("profile", "profiles", "user_id", "user_id", "updated_at",
                    ["subscription", "language", "streak_days"]), key, columns)
    check_join(Join("item", "items", "item_id", "item_id", "updated_at",
                    ["difficulty", "popularity", "expected_response_ms"], types=["attempt"]), key, columns)
    check_order("user_id")


def ip_number(text):
    """The address on sluice's one u128 line: IPv4 as `::ffff:a.b.c.d`."""
    addr = ipaddress.ip_address(text)
    return (0xFFFF << 32) | int(addr) if addr.version == 4 else int(addr)


class Ranges:
    """The geo table: non-overlapping CIDR ranges, each with its versions by time."""

    def __init__(self, rows):
        by_range = {}
        for cidr, t, value in rows:
            net = ipaddress.ip_network(cidr, strict=False)
            first = ip_number(str(net.network_address))
            last = first + net.num_addresses - 1
            by_range.setdefault((first, last), []).append((t, value))
        self.ranges = sorted(by_range.items())
        self.firsts = [first for (first, _), _ in self.ranges]
        self.overlaps = [
            (a, b) for (a, _), (b, _) in zip(self.ranges, self.ranges[1:]) if b[0] <= a[1]
        ]

    def lookup(self, ip, t):
        """The value of the range holding `ip` as of `t` and its time, or None."""
        try:
            n = ip_number(ip)
        except ValueError:
            return None
        i = bisect.bisect_right(self.firsts, n) - 1
        if i < 0 or n > self.ranges[i][0][1]:
            return None
        versions = [v for v in self.ranges[i][1] if v[0] <= t]
        return max(versions, key=lambda v: v[0]) if versions else None


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def payload(out, uploads, geo, profiles, sensors, prices):
    on_time_view("uploads", uploads, "event_time", 60_000)
    on_time_view("geo", geo, "updated_at", 0)
    on_time_view("profiles", profiles, "updated_at", 60_000)
    on_time_view("sensors", sensors, "reading_time", 60_000)
    on_time_view("prices", prices, "price_time", 60_000)
    columns = enriched_view(out)
    key = "(event_type, upload_id)"
    geo_fields = ["country", "city", "latitude", "longitude"]
    table = Ranges(
        (cidr, t, dict(zip(geo_fields, rest)))
        for (cidr, t, *rest) in con.execute(f"select cidr, t, {', '.join(geo_fields)} from geo order by row").fetchall()
    )
    if table.overlaps:
        report("geo ranges", "non-overlapping (an assumption of this oracle)", table.overlaps)

    # Rules: `unknown_origin` (allow, when there is no geo) comes before `drop_failed_tiny`
    # (block), so only failed tiny uploads with a geo row are blocked.
    con.execute(f"""
        create view deduped as
        select * from uploads qualify row_number() over (partition by {key} order by t, row) = 1""")
    tiny = con.execute(
        "select event_type, upload_id, t, uploader_ip from deduped where event_type = 'upload_failed' and bytes < 1000"
    ).fetchall()
    con.execute("create table blocked (event_type varchar, upload_id varchar)")
    blocked = [(kind, upload) for (kind, upload, t, ip) in tiny if table.lookup(ip, t) is not None]
    if blocked:
        con.executemany("insert into blocked values (?, ?)", blocked)
    con.execute("create view kept as select * from deduped anti join blocked using (event_type, upload_id)")
    check_rows(f"select {key} from kept", key)

    # Geo: the range holding the uploader's address, as of the event time.
    if "geo" not in columns:
        report("geo (as-of IP range)", "no such column in enriched", ["sluice attached no row at all"])
    else:
        diffs, hits = [], 0
        rows = con.execute("select event_type, upload_id, t, uploader_ip, geo from enriched").fetchall()
        for kind, upload, t, ip, got in rows:
            found = table.lookup(ip, t)
            want = None
            if found is not None:
                hits += 1
                want = dict(found[1], updated_at=found[0])
            if got is not None:
                got = {k: (v if k != "updated_at" else int(v.timestamp() * 1000)) for k, v in got.items()}
            if (got is None) != (want is None) or (
                got is not None and (set(got) != set(want) or not all(same(got[k], want[k]) for k in want))
            ):
                diffs.append(f"{(kind, upload)} ip {ip}: sluice {got}, expected {want}")
        report("geo (as-of IP range)", f"{len(rows)} enriched rows, {hits} hits expected", diffs)

    check_join(Join("profile", "profiles", "user_id", "user_id", "updated_at", ["subscription", "language", "country"]), key, columns)
    check_join(Join("sensor", "sensors", "sensor_id", "sensor_id", "reading_time", max_age_ms=120_000), key, columns)
    check_join(Join("market", "prices", "symbol", "symbol", "price_time", max_age_ms=60_000,
                    types=["upload_completed"]), key, columns)
    check_order("user_id")


SPECS = {"learning_analytics": (learning, 3), "payload_augmentation": (payload, 5)}

if __name__ == "__main__":
    spec = os.path.splitext(os.path.basename(sys.argv[1]))[0] if len(sys.argv) > 1 else ""
    if spec not in SPECS or len(sys.argv) != 3 + SPECS[spec][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    check, _ = SPECS[spec]
    check(*sys.argv[2:])
    sys.exit(1 if failed else 0)
