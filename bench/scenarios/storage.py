"""Scenario 6, storage: bytes per stored reading, indexes included, from
pg_total_relation_size of the backfilled day's partitions over their rows;
drain-written history, rollups and live state reported apart."""

from __future__ import annotations

import psycopg
from psycopg import sql

from bench.config import DATABASE_URL, log
from bench.scenario import Figure, Scenario

BACKFILLED = "history, backfilled day (COPY)"


class Storage(Scenario):
    number = 6
    repeated = False
    timed = False  # sizes, not timings: no need for a quiet machine
    table = (
        Figure("s6_bytes_per_reading", "6 storage: bytes per stored reading", "bytes", ("<=", 100)),
    )

    def prepare(self) -> None:
        self.day = self.bench.backfilled_day()
        log("scenario 6: storage")

    def run(self, i: int) -> dict:
        tag = f"{self.day.start.date():%Y%m%d}"
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            out = {BACKFILLED: measure(conn, [f"meter_readings_p{tag}", f"vehicle_readings_p{tag}"]),
                   "  meter readings of that day": measure(conn, [f"meter_readings_p{tag}"]),
                   "  vehicle readings of that day": measure(conn, [f"vehicle_readings_p{tag}"])}
            others = [p for table in ("meter_readings", "vehicle_readings")
                      for p in partitions(conn, table) if not p.endswith(tag)]
            if others:
                out["history, other days (written by the drain)"] = measure(conn, others)
            out["hourly rollups"] = measure(conn, ["meter_hourly", "vehicle_hourly"])
            out["live state"] = measure(conn, ["live_meters", "live_vehicles"])
        for label, e in out.items():
            log(f"  {label}: {e['rows']:,} rows, {e['bytes'] / 2**20:,.1f} MiB "
                f"(heap {e['heap_bytes'] / 2**20:,.1f} + indexes/other {e['index_bytes'] / 2**20:,.1f}) "
                f"= {e['bytes_per_row']} bytes/row")
        return out

    def record(self, runs: list[dict]) -> None:
        self.bench.figures["s6_bytes_per_reading"] = runs[0][BACKFILLED]["bytes_per_row"]
        self.bench.details["s6_storage"] = runs[0]


def partitions(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_inherits JOIN pg_class c ON c.oid = inhrelid "
        "JOIN pg_class p ON p.oid = inhparent WHERE p.relname = %s ORDER BY 1", (table,))]


def measure(conn: psycopg.Connection, tables: list[str]) -> dict:
    """Rows and bytes (heap, and indexes with the rest) of some tables together."""
    size = heap = rows = 0
    for t in tables:
        total, h, n = conn.execute(
            sql.SQL("SELECT pg_total_relation_size({t}), pg_relation_size({t}),"
                    " (SELECT count(*) FROM {i})").format(
                t=sql.Literal(t), i=sql.Identifier(t))).fetchone()
        size += total
        heap += h
        rows += n
    return {"tables": tables, "rows": rows, "bytes": size, "heap_bytes": heap,
            "index_bytes": size - heap, "bytes_per_row": round(size / rows, 1) if rows else None}


SCENARIO = Storage
