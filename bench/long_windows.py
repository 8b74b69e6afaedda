#!/usr/bin/env python3
"""Analytics over long windows, and the longest drain wait behind a roll-up (issue 17).

    .venv/bin/python bench/long_windows.py --size smoke --database-url postgresql://127.0.0.1/scratch
    .venv/bin/python bench/long_windows.py --size full --database-url ... --base-url http://127.0.0.1:8000

A module of functions for bench/run.py to call, and a small command line. The
database must be a scratch one with the migrations applied (`alembic upgrade
head`); it is loaded with `python -m simulator backfill`'s code: `days` whole
UTC days for `vehicles` vehicles and `meters` meters, ending at midnight two
days back, plus one synthetic vehicle (`V-YEAR`, with meter `M-YEAR`) with one
reading an hour for the year before that. With `--base-url` (a running `web`
on that database, operator token `--token`) figures are timed over HTTP; without,
in process (the models' functions: SQL plus Python, no HTTP).

Figures (`measure`):
- `vehicle_30d_p99_ms`: performance of random vehicles over the `days` window;
- `fleet_30d_ms`: the fleet endpoint over the same window (median of calls);
- `fleet_day_edges_ms`: the fleet over a day whose ends cut through hours
  (from 00:30 to 00:30 of the next day: 2 x 30 minutes of edges per device);
- `series_year_1d_ms`: V-YEAR's series with bucket=1d over its year (median);
- `drain_wait_max_ms`: while `workers.roll_up_hours`' code rolls up hours of the
  loaded window again, drain-like transactions (two threads, 50 late readings
  each, of the hours being rolled up) time their first statement, the
  watermark FOR SHARE: the longest is the wait behind a roll-up.

Extrapolation to the full fleet (10,000 vehicles and 10,000 meters), from a run
at V vehicles and M meters (the issue's full size: 30 days x 2,000 + 2,000):
- per-vehicle p99 and the year's series do not depend on the fleet's size: each
  reads index ranges of one vehicle and its meters (30 daily rows, the edge
  hours and minutes), so the figure measured is the full fleet's;
- both fleet figures read a fixed number of rows per device (30 daily rows, or
  the edge hours' rollups and 2 x 30 minutes of history) plus a sort of the
  vehicles: linear in devices, so they are scaled by 20,000 / (V + M);
- the drain wait is bounded by one device range (models/roll_up.py:
  RANGE_DEVICES devices' hour) plus the drains already holding the lock, not
  by the fleet: the figure measured stands, and the roll-up's total time per
  hour (`roll_up_s_per_hour`) is what grows, linearly with devices.
Scale from the issue's full size (4,000 devices: x 5). At smoke sizes fixed
costs (planning, the round trips) dominate, and the scaled fleet figures are
loose upper bounds, not estimates.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, text  # noqa: E402

from models import roll_up as rollups  # noqa: E402
from models.analytics import vehicle_performance, vehicle_series  # noqa: E402
from models.db import create_db_engine  # noqa: E402
from models.fleet import fleet_page  # noqa: E402
from models.partitions import ensure_days  # noqa: E402
from models.rollups import WATERMARK_FOR_DRAIN  # noqa: E402
from models.store import Columns, store_batch  # noqa: E402
from simulator import backfill  # noqa: E402
from simulator.fleet import device_ids  # noqa: E402

FULL_FLEET_DEVICES = 20_000
YEAR_VEHICLE, YEAR_METER = "V-YEAR", "M-YEAR"


@dataclass(frozen=True)
class Size:
    days: int
    vehicles: int
    meters: int
    calls: int  # per timed figure


SIZES = {"full": Size(30, 2000, 2000, 200), "smoke": Size(2, 40, 40, 20)}


@dataclass(frozen=True)
class Loaded:
    start: datetime  # of the fleet's window, a midnight
    end: datetime
    year_start: datetime  # of V-YEAR's year, ending at `start`
    vehicles: list[str]


def load(database_url: str, size: Size, end: datetime | None = None) -> Loaded:
    """Backfill `size.days` days of the fleet ending at midnight two days back
    (or `end`), and V-YEAR's year before them; rollups rebuilt by both."""
    end = end or (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0,
                                                                 microsecond=0)
    start = end - timedelta(days=size.days)
    backfill.run(database_url, size.vehicles, size.meters, size.days * 24, end=end, progress=False)
    year_start = start - timedelta(days=365)
    load_year(database_url, year_start, start)
    return Loaded(start, end, year_start, device_ids("V", size.vehicles))


def load_year(database_url: str, start: datetime, end: datetime) -> None:
    """V-YEAR and M-YEAR (linked since `start`): one reading an hour in [start, end)."""
    engine = create_db_engine(database_url)
    try:
        days = {(start + timedelta(days=n)).date() for n in range((end - start).days)}
        ensure_days(engine, days)
        with engine.begin() as conn:
            hours = ("FROM generate_series(CAST(:start AS timestamptz), :end - interval '1 hour',"
                     " interval '1 hour') ts")
            conn.execute(text(f"INSERT INTO vehicle_readings SELECT :v, ts, 50, 7.2,"
                              f" 20 + extract(hour FROM ts) {hours} ON CONFLICT DO NOTHING"),
                         {"v": YEAR_VEHICLE, "start": start, "end": end})
            conn.execute(text(f"INSERT INTO meter_readings SELECT :m, ts, 8, 230 {hours}"
                              " ON CONFLICT DO NOTHING"),
                         {"m": YEAR_METER, "start": start, "end": end})
            conn.execute(text("INSERT INTO meter_links VALUES (:m, :start, :v) ON CONFLICT DO NOTHING"),
                         {"m": YEAR_METER, "v": YEAR_VEHICLE, "start": start})
            conn.execute(text("INSERT INTO live_vehicles SELECT * FROM vehicle_readings"
                              " WHERE vehicle_id = :v ORDER BY ts DESC LIMIT 1 ON CONFLICT DO NOTHING"),
                         {"v": YEAR_VEHICLE})
            conn.execute(text("INSERT INTO live_meters SELECT * FROM meter_readings"
                              " WHERE meter_id = :m ORDER BY ts DESC LIMIT 1 ON CONFLICT DO NOTHING"),
                         {"m": YEAR_METER})
        rollups.rebuild(engine, start, end)
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Caller:
    """One analytics call, over HTTP (a kept-alive connection) or in process."""

    def __init__(self, engine: Engine, base_url: str | None, token: str) -> None:
        self.engine = engine
        self.base = urllib.parse.urlsplit(base_url) if base_url else None
        self.token = token
        self.conn = http.client.HTTPConnection(self.base.hostname, self.base.port or 80, timeout=60) \
            if self.base else None

    def get(self, path: str, query: dict, in_process) -> float:
        """Milliseconds one call took."""
        started = time.perf_counter()
        if self.conn is None:
            in_process()
        else:
            self.conn.request("GET", f"{path}?{urllib.parse.urlencode(query)}",
                              headers={"Authorization": f"Bearer {self.token}"})
            response = self.conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return (time.perf_counter() - started) * 1000


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_analytics(caller: Caller, loaded: Loaded, calls: int) -> dict:
    """The four analytics figures (module docstring)."""
    rng = random.Random(17)
    window = {"from": iso(loaded.start), "to": iso(loaded.end)}
    per_vehicle = []
    for vehicle_id in [rng.choice(loaded.vehicles) for _ in range(calls + 10)]:
        per_vehicle.append(caller.get(
            f"/v1/analytics/performance/{vehicle_id}", window,
            lambda v=vehicle_id: vehicle_performance(caller.engine, v, loaded.start, loaded.end)))

    def fleet(start: datetime, end: datetime) -> list[float]:
        return [caller.get("/v1/analytics/fleet", {"from": iso(start), "to": iso(end)},
                           lambda: fleet_page(caller.engine, start, end, "efficiency", False, 100, 0))
                for _ in range(max(3, calls // 20) + 1)][1:]

    day = loaded.end - timedelta(days=1) + timedelta(minutes=30)
    year = {"from": iso(loaded.year_start), "to": iso(loaded.start), "bucket": "1d"}
    series = [caller.get(f"/v1/analytics/performance/{YEAR_VEHICLE}/series", year,
                         lambda: vehicle_series(caller.engine, YEAR_VEHICLE, loaded.year_start,
                                                loaded.start, timedelta(days=1)))
              for _ in range(calls + 1)][1:]
    return {
        "vehicle_30d_p50_ms": round(statistics.median(per_vehicle[10:]), 2),
        "vehicle_30d_p99_ms": round(percentile(per_vehicle[10:], 99), 2),
        "fleet_30d_ms": round(statistics.median(fleet(loaded.start, loaded.end)), 1),
        "fleet_day_edges_ms": round(statistics.median(fleet(day - timedelta(days=1), day)), 1),
        "series_year_1d_ms": round(statistics.median(series), 2),
    }


def drain_wait_behind_roll_up(engine: Engine, loaded: Loaded, hours: int = 3) -> dict:
    """Roll `hours` hours of the loaded window up again (watermark moved back to
    them) while two threads run drain transactions of late readings; the
    longest time a drain's watermark lock took, and the roll-up's pace."""
    first = loaded.end - timedelta(hours=hours + 1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE rollup_watermark SET rolled_up_until = :w, rolling_device = NULL"),
                     {"w": first})
    waits: list[float] = []
    stop = threading.Event()

    def drain(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            vehicles = Columns(("device", "ts", "soc", "dc", "temp"))
            for _ in range(50):
                ts = first + timedelta(seconds=rng.uniform(0, hours * 3600))
                vehicles.append([f"V-LATE-{n}", ts.isoformat(), 50.0, 0.1, 30.0])
            with engine.begin() as conn:
                started = time.perf_counter()
                conn.exec_driver_sql(WATERMARK_FOR_DRAIN)
                waits.append((time.perf_counter() - started) * 1000)
                store_batch(conn, Columns(("device", "ts", "ac", "voltage")), vehicles)
            time.sleep(0.01)

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        before = len(waits)
        started = time.perf_counter()
        rolled = rollups.roll_up(engine, first + timedelta(hours=hours) + rollups.SETTLE,
                                 max_hours=hours)
        took = time.perf_counter() - started
        during = waits[before:]
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {"drain_wait_max_ms": round(max(during), 1),
            "drain_wait_p50_ms": round(statistics.median(during), 2),
            "drains_during_roll_up": len(during),
            "roll_up_s_per_hour": round(took / max(rolled, 1), 3),
            "range_devices": rollups.RANGE_DEVICES}


def extrapolate(figures: dict, size: Size) -> dict:
    """The full fleet's figures by the method of the module docstring."""
    scale = FULL_FLEET_DEVICES / (size.vehicles + size.meters)
    return {
        "vehicle_30d_p99_ms": figures["vehicle_30d_p99_ms"],
        "fleet_30d_ms": round(figures["fleet_30d_ms"] * scale, 1),
        "fleet_day_edges_ms": round(figures["fleet_day_edges_ms"] * scale, 1),
        "series_year_1d_ms": figures["series_year_1d_ms"],
        "drain_wait_max_ms": figures["drain_wait_max_ms"],
        "roll_up_s_per_hour": round(figures["roll_up_s_per_hour"] * scale, 2),
    }


def measure(database_url: str, size: Size, base_url: str | None = None,
            token: str = "dev-operator-token") -> dict:
    """Load, time, extrapolate: the figures as a dict (also printed by main)."""
    loaded = load(database_url, size)
    engine = create_db_engine(database_url)
    try:
        figures = time_analytics(Caller(engine, base_url, token), loaded, size.calls)
        figures.update(drain_wait_behind_roll_up(engine, loaded))
    finally:
        engine.dispose()
    return {"size": asdict(size), "over": "http" if base_url else "in process",
            "measured": figures, "full_fleet": extrapolate(figures, size)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="smoke")
    p.add_argument("--database-url", required=True, help="a scratch database, migrations applied")
    p.add_argument("--base-url", help="a running web on that database (default: time in process)")
    p.add_argument("--token", default="dev-operator-token")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.database_url, SIZES[args.size], args.base_url, args.token), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
