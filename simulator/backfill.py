"""`python -m simulator backfill`: hours of fleet history written straight into PostgreSQL.

One reading per device per minute for the `hours` before `end`, loaded with
binary COPY into the history tables (which route rows to their day partitions),
in pieces of about PIECE_ROWS rows, each its own transaction. The rows of a piece
are packed by NumPy straight into PostgreSQL's binary COPY format: ids are
zero-padded to one width, so every row of a table has the same layout.

Rows are written device by device (each device's minutes in order), so each
primary-key index grows at its right edge, which is the cheapest way to build it.
Meters and vehicles go through two connections at once (one COPY each), so the
server uses both cores while this process generates the next pieces.

Running it twice is safe: when the window already holds readings of these
devices, every piece goes through a temporary table and
`INSERT ... ON CONFLICT DO NOTHING` (the readings already stored stand); when it
does not (the usual case), pieces are copied into history directly, and a piece
that meets a reading stored meanwhile is redone the slow way.
"""

from __future__ import annotations

import queue
import struct
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from sqlalchemy import NullPool, create_engine
from tqdm import tqdm

from models import partitions, roll_up
from models.db import create_db_engine, sqlalchemy_url
from models.links import put_links
from models.live import UPSERT_LIVE_METERS, UPSERT_LIVE_VEHICLES
from models.rollups import KINDS, UNITS
from models.session_store import ChargingSession
from settings import load_or_exit
from simulator import fleet

PIECE_ROWS = 500_000  # rows of one table per COPY (and per transaction)
PROGRESS_STEPS = 10  # progress bar moves per piece
ROLLUP_WORK_MEM = "256MB"
SIM_CELLS = 2_000_000  # device-minutes simulated at once (bounds memory: ~100 MB)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)

METERS = "meter_readings"
VEHICLES = "vehicle_readings"
COLUMNS = {
    METERS: ("meter_id", "ts", "kwh_consumed_ac", "voltage"),
    VEHICLES: ("vehicle_id", "ts", "soc", "kwh_delivered_dc", "battery_temp"),
}


def default_database_url() -> str:
    return load_or_exit().database_url


def floor_minute(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(second=0, microsecond=0)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- binary COPY rows ---------------------------------------------------------------


def row_dtype(id_width: int, floats: int) -> np.dtype:
    """One row of binary COPY: field count, then (length, value) per field, big-endian."""
    fields = [("n", ">i2"), ("id_len", ">i4"), ("id", f"S{id_width}"), ("ts_len", ">i4"), ("ts", ">i8")]
    for i in range(floats):
        fields += [(f"f{i}_len", ">i4"), (f"f{i}", ">f8")]
    return np.dtype(fields)


def pack(ids: np.ndarray, ts_us: np.ndarray, *columns: np.ndarray) -> bytes:
    """A complete binary COPY stream of len(ids) devices x len(ts_us) instants.

    `ids`: fixed-width byte strings; `ts_us`: microseconds since 2000-01-01 UTC;
    each column shaped (instants, devices). Rows come device by device.
    """
    minutes, devices = len(ts_us), len(ids)
    rows = np.empty(minutes * devices, dtype=row_dtype(ids.dtype.itemsize, len(columns)))
    rows["n"] = 2 + len(columns)
    rows["id_len"] = ids.dtype.itemsize
    rows["id"] = np.repeat(ids, minutes)
    rows["ts_len"] = 8
    rows["ts"] = np.tile(ts_us, devices)
    for i, column in enumerate(columns):
        rows[f"f{i}_len"] = 8
        rows[f"f{i}"] = column.T.ravel()
    return COPY_HEADER + rows.tobytes() + COPY_TRAILER


# -- writing --------------------------------------------------------------------------


@dataclass
class TableStats:
    rows: int = 0  # generated and sent
    inserted: int = 0  # new rows stored
    merged_pieces: int = 0  # pieces that went through the ON CONFLICT path
    seconds: float = 0.0  # busy writing

    @property
    def skipped(self) -> int:
        return self.rows - self.inserted


class Writer(threading.Thread):
    """COPYs the pieces of one history table, each in a transaction of its own."""

    def __init__(self, conninfo: str, table: str, merge: bool, bar: tqdm) -> None:
        super().__init__(name=f"copy-{table}", daemon=True)
        self.conninfo = conninfo
        self.table = table
        self.merge = merge
        self.bar = bar
        self.pieces: queue.Queue = queue.Queue(maxsize=3)
        self.stats = TableStats()
        self.error: BaseException | None = None
        self.stage = f"simulator_stage_{table}"

    def put(self, rows: int, data: bytes) -> None:
        while True:
            if self.error is not None:
                raise RuntimeError(f"writing {self.table} failed") from self.error
            try:
                self.pieces.put((rows, data), timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.pieces.put(None)

    def run(self) -> None:
        finished = False
        try:
            with psycopg.connect(self.conninfo) as conn:
                # A backfill can be run again after a crash: no need to wait for each flush.
                conn.execute("SET synchronous_commit = off")
                conn.commit()
                while (piece := self.pieces.get()) is not None:
                    started = time.perf_counter()
                    rows, data = piece
                    self.stats.inserted += self._write(conn, data, rows)
                    self.stats.rows += rows
                    self.stats.seconds += time.perf_counter() - started
                finished = True
        except BaseException as exc:  # reported by the producer
            self.error = exc
            while not finished and self.pieces.get() is not None:  # unblock the producer
                pass

    def _send(self, cur: psycopg.Cursor, target: str, data: bytes, rows: int) -> None:
        """COPY `data` into `target`, moving the progress bar as it goes; on failure the
        bar is moved back."""
        step = -(-len(data) // PROGRESS_STEPS)
        counted = 0
        try:
            with cur.copy(f"COPY {target} ({', '.join(COLUMNS[self.table])}) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                view = memoryview(data)
                for offset in range(0, len(data), step):
                    copy.write(view[offset:offset + step])
                    done = rows * min(offset + step, len(data)) // len(data)
                    self.bar.update(done - counted)
                    counted = done
        except BaseException:
            self.bar.update(-counted)
            raise

    def _write(self, conn: psycopg.Connection, data: bytes, rows: int) -> int:
        columns = ", ".join(COLUMNS[self.table])
        if not self.merge:
            try:
                with conn.cursor() as cur:
                    self._send(cur, self.table, data, rows)
                conn.commit()
                return rows
            except psycopg.errors.UniqueViolation:
                # Readings of these devices arrived meanwhile: keep them, merge from now on.
                conn.rollback()
                self.merge = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} "
                        f"(LIKE {self.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            self._send(cur, self.stage, data, rows)
            cur.execute(f"INSERT INTO {self.table} ({columns}) SELECT {columns} FROM {self.stage} "
                        "ON CONFLICT DO NOTHING")
            inserted = cur.rowcount
        conn.commit()
        self.stats.merged_pieces += 1
        return inserted


# -- the run ---------------------------------------------------------------------------


EXISTING = """
    SELECT EXISTS (SELECT 1 FROM {table} WHERE {id} = ANY(%(ids)s) AND ts >= %(start)s AND ts < %(end)s)
"""

# The live state from the window's last minute of history, by the drain's own upsert.
LIVE = {
    METERS: UPSERT_LIVE_METERS.format(source="""(
        SELECT * FROM meter_readings
        WHERE meter_id = ANY(%(ids)s) AND ts >= %(last)s AND ts < %(end)s) AS last_minute"""),
    VEHICLES: UPSERT_LIVE_VEHICLES.format(source="""(
        SELECT * FROM vehicle_readings
        WHERE vehicle_id = ANY(%(ids)s) AND ts >= %(last)s AND ts < %(end)s) AS last_minute"""),
}


@dataclass
class Summary:
    start: datetime
    end: datetime
    meters: int
    vehicles: int
    tables: dict[str, TableStats]
    degraded: list[str]
    phases: dict[str, float] = field(default_factory=dict)
    merged: bool = False
    rollups: str = "not run"
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def inserted(self) -> int:
        return sum(t.inserted for t in self.tables.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def report(self) -> str:
        m, v = self.tables[METERS], self.tables[VEHICLES]
        hours = (self.end - self.start) / timedelta(hours=1)
        phases = ", ".join(f"{name} {s:.1f} s" for name, s in self.phases.items())
        lines = [
            f"backfill: {self.rows:,} rows ({m.rows:,} meter + {v.rows:,} vehicle readings) "
            f"for {self.meters:,} meters and {self.vehicles:,} vehicles",
            f"  window {iso(self.start)} .. {iso(self.end)} ({hours:g} h, one reading per device per minute)",
            f"  {self.seconds:.1f} s, {self.rows_per_s:,.0f} rows/s ({phases})",
            f"  stored {self.inserted:,} new rows"
            + (f", skipped {self.rows - self.inserted:,} already there" if self.merged else
               " (empty window: COPY straight into history)"),
            f"  links: meter i -> vehicle i since {iso(self.start)}; live state updated; "
            f"rollups: {self.rollups}",
        ]
        if self.degraded:
            shown = ", ".join(self.degraded[:10]) + (", ..." if len(self.degraded) > 10 else "")
            low, high = fleet.DEGRADED_EFFICIENCY
            lines.append(f"  degraded vehicles (efficiency {low:.2f}-{high:.2f}): "
                         f"{len(self.degraded)}: {shown}")
        return "\n".join(lines)


def _vacuum_analyze(database_url: str, tables: list[str]) -> None:
    """VACUUM as well as ANALYZE: a bulk load leaves the visibility map empty and
    every row's hint bits unset, so autovacuum and the first readers would
    rewrite the whole load while it is being queried; history that old has
    long been vacuumed in a running system."""
    if tables:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")


def _days(start: datetime, end: datetime) -> set:
    day, last = start.date(), (end - timedelta(microseconds=1)).date()
    days = set()
    while day <= last:
        days.add(day)
        day += timedelta(days=1)
    return days


def run(database_url: str, vehicles: int, meters: int, hours: float, end: datetime | None = None,
        degraded: int = 0, seed: int = 1, progress: bool | None = None) -> Summary:
    """Write the fleet's history for the `hours` before `end` (default: now); returns what it did."""
    if vehicles < 1 or meters < 0:
        raise ValueError("need at least one vehicle, and no negative number of meters")
    end = floor_minute(end or datetime.now(UTC))
    minutes = round(hours * 60)
    if minutes < 1:
        raise ValueError("hours must cover at least one minute")
    start = end - timedelta(minutes=minutes)
    began = time.perf_counter()

    profile = fleet.make_profile(vehicles, degraded, seed)
    vehicle_ids = fleet.device_ids("V", vehicles)
    meter_ids = fleet.device_ids("M", meters)
    summary = Summary(start, end, meters, vehicles, {METERS: TableStats(), VEHICLES: TableStats()},
                      [vehicle_ids[i] for i in np.flatnonzero(profile.degraded)])
    show = sys.stderr.isatty() if progress is None else progress

    @contextmanager
    def phase(name: str, note: str | None = None):
        if show and note:
            print(f"backfill: {note} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        yield
        summary.phases[name] = time.perf_counter() - t

    engine = create_db_engine(database_url)
    try:
        window = {"start": start, "end": end}
        with phase("prepare"), psycopg.connect(database_url, autocommit=True) as conn:
            partitions.ensure_days(engine, _days(start, end))
            summary.merged = any(
                conn.execute(EXISTING.format(table=table, id=COLUMNS[table][0]), {**window, "ids": ids})
                .fetchone()[0]
                for table, ids in ((METERS, meter_ids), (VEHICLES, vehicle_ids)) if ids
            )
            if meters:
                with engine.begin() as links_conn:
                    put_links(links_conn, {meter_ids[i]: vehicle_ids[fleet.linked_vehicle(i, vehicles)]
                                           for i in range(meters)}, start)
        if summary.merged and show:
            print("backfill: the window already holds readings of these devices: merging "
                  "(the readings stored stand)", file=sys.stderr)

        with phase("copy"):
            _copy_history(database_url, profile, meter_ids, vehicle_ids, start, minutes, seed,
                          summary.merged, summary, show)
        summary.merged = summary.merged or any(s.merged_pieces for s in summary.tables.values())

        with phase("live state", "updating live state"), \
                psycopg.connect(database_url, autocommit=True) as conn:
            last = {**window, "last": end - timedelta(minutes=1)}
            for table, ids in ((METERS, meter_ids), (VEHICLES, vehicle_ids)):
                if ids:
                    conn.execute(LIVE[table], {**last, "ids": ids})

        # Statistics first: the rollup rebuild reads what was just written.
        with phase("analyze", "VACUUM ANALYZE"):
            touched = [partitions.partition_name(table, day) for table in (METERS, VEHICLES)
                       for day in sorted(_days(start, end))]
            _vacuum_analyze(database_url, [*touched, "live_meters", "live_vehicles", "meter_links"])

        with phase("rollups", "rebuilding the rollups of the window's days"):
            # Hashing a day of the fleet's device-hours needs more than the default
            # work_mem; JIT off as for every engine (models/db.py).
            rollup_engine = create_engine(
                sqlalchemy_url(database_url), poolclass=NullPool,
                connect_args={"connect_timeout": 5,
                              "options": f"-c work_mem={ROLLUP_WORK_MEM} -c jit=off"},
            )
            try:
                roll_up.rebuild(rollup_engine, start, end)
            finally:
                rollup_engine.dispose()
            # The sessions too: without statistics, the roll-up's per-range statements
            # scanned all of them (36 ms a range, under the watermark lock).
            _vacuum_analyze(database_url, [*(f"{kind}_{unit}" for kind in KINDS for unit in UNITS),
                                           ChargingSession.__tablename__])
        summary.rollups = "15-minute, hourly, 6-hour and daily ones rebuilt for the window's days"
    finally:
        engine.dispose()
    summary.seconds = time.perf_counter() - began
    return summary


def _copy_history(database_url: str, profile: fleet.Profile, meter_ids: list[str],
                  vehicle_ids: list[str], start: datetime, minutes: int, seed: int, merge: bool,
                  summary: Summary, show: bool) -> None:
    vehicles, meters = len(vehicle_ids), len(meter_ids)
    ts_us = ((start - PG_EPOCH) // timedelta(microseconds=1)
             + np.arange(minutes, dtype=np.int64) * 60_000_000)
    v_ids = np.array(vehicle_ids, dtype=f"S{len(vehicle_ids[0])}")
    m_ids = np.array(meter_ids, dtype=f"S{len(meter_ids[0])}") if meters else None
    block = max(1, SIM_CELLS // minutes)  # vehicles simulated at once
    piece = max(1, PIECE_ROWS // minutes)  # devices per COPY

    bar = tqdm(total=(vehicles + meters) * minutes, unit="row", unit_scale=True, smoothing=0.05,
               desc="backfill", disable=not show, file=sys.stderr)
    writers = {table: Writer(database_url, table, merge, bar) for table in (METERS, VEHICLES)}
    for w in writers.values():
        w.start()
    try:
        for a in range(0, vehicles, block):
            b = min(a + block, vehicles)
            rng = np.random.default_rng([seed, 1, a])
            _, series = fleet.simulate(profile.select(slice(a, b)), minutes, rng)
            for p in range(a, b, piece):
                q = min(p + piece, b)
                cols = slice(p - a, q - a)
                writers[VEHICLES].put((q - p) * minutes, pack(
                    v_ids[p:q], ts_us, series.soc[:, cols], series.dc_kwh[:, cols], series.temp_c[:, cols]))
                if p < meters:  # meter i feeds vehicle i
                    mq = min(q, meters)
                    cols = slice(p - a, mq - a)
                    writers[METERS].put((mq - p) * minutes, pack(
                        m_ids[p:mq], ts_us, series.ac_kwh[:, cols], series.voltage[:, cols]))
        # Meters beyond the vehicles: spare charge points, linked but drawing nothing.
        for p in range(vehicles, meters, piece):
            q = min(p + piece, meters)
            rng = np.random.default_rng([seed, 2, p])
            voltage = np.round(fleet.NOMINAL_VOLTAGE + rng.normal(0.0, 1.5, (minutes, q - p)), 1)
            writers[METERS].put((q - p) * minutes,
                                pack(m_ids[p:q], ts_us, np.zeros((minutes, q - p)), voltage))
    finally:
        for w in writers.values():
            w.finish()
        for w in writers.values():
            w.join()
        bar.close()
    for table, w in writers.items():
        if w.error is not None:
            raise RuntimeError(f"writing {table} failed: {w.error}") from w.error
        summary.tables[table] = w.stats
