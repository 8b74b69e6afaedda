"""The long windows' history (scenario 10, issue 17): `long_days` whole UTC days
for `long_devices` vehicles and as many meters, loaded once with the simulator's
backfill, plus one synthetic vehicle (`V-YEAR`, with meter `M-YEAR`) with one
reading an hour for the year before them.

The days end at midnight two days back, where the backfilled day (backfill.py)
begins, so neither writes the other's partitions. The issue's size is 30 days x
2,000 + 2,000 (172.8 M rows); `--long-days` and `--long-devices` choose another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.config import DATABASE_URL, iso, log
from bench.cpu import CpuMeter
from models import roll_up as rollups
from models.db import create_db_engine
from models.partitions import ensure_days
from simulator import backfill
from simulator.fleet import device_ids

SIZES = {"long_days": (30, 2), "long_devices": (2000, 40)}
YEAR_VEHICLE, YEAR_METER = "V-YEAR", "M-YEAR"


@dataclass(frozen=True)
class Window:
    start: datetime  # of the fleet's days, a midnight
    end: datetime
    year_start: datetime  # of V-YEAR's year, which ends at `start`
    vehicles: list[str]
    devices: int  # vehicles and meters loaded

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def load_window(sizes: dict, cpu: CpuMeter, reuse: bool = False) -> tuple[Window, dict]:
    """Backfill the days, then V-YEAR's year; returns the window and what the load took.
    With `reuse`, a window a kept database already holds (bench --reuse-db) is not loaded again."""
    days, devices = int(sizes["long_days"]), int(sizes["long_devices"])
    end = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    rows = 2 * devices * days * 24 * 60
    year_start = start - timedelta(days=365)
    window = Window(start, end, year_start, device_ids("V", devices), 2 * devices)
    if reuse and loaded(window):
        log(f"long backfill: {days} days x {devices:,} vehicles + {devices:,} meters are loaded already "
            f"({iso(start)}..{iso(end)})")
        return window, {"days": days, "vehicles": devices, "meters": devices, "rows": rows,
                        "reused": True, "window": [iso(start), iso(end)]}
    log(f"long backfill: {days} days x {devices:,} vehicles + {devices:,} meters ({rows:,} rows), "
        f"{iso(start)}..{iso(end)}, and {YEAR_VEHICLE}'s year before them")
    cpu.start()
    started = time.monotonic()
    backfill.run(DATABASE_URL, devices, devices, days * 24, end=end, progress=False)
    load_year(year_start, start)
    seconds = time.monotonic() - started
    return window, {"days": days, "vehicles": devices, "meters": devices, "rows": rows,
                    "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds),
                    "cpu_pct": cpu.stop(), "window": [iso(start), iso(end)]}


def loaded(w: Window) -> bool:
    """Whether the window's first and last days are rolled up for its last vehicle and
    V-YEAR's year is there: what load_window leaves."""
    engine = create_db_engine(DATABASE_URL)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT (SELECT count(*) FROM vehicle_daily WHERE vehicle_id = :v AND day IN (:a, :b))"
                " = 2 AND EXISTS (SELECT 1 FROM vehicle_daily WHERE vehicle_id = :year AND day = :y)"),
                {"v": w.vehicles[-1], "a": w.start, "b": w.end - timedelta(days=1),
                 "year": YEAR_VEHICLE, "y": w.year_start}).scalar_one()
    finally:
        engine.dispose()


def load_year(start: datetime, end: datetime) -> None:
    """V-YEAR and M-YEAR (linked since `start`): one reading an hour in [start, end)."""
    engine = create_db_engine(DATABASE_URL)
    try:
        ensure_days(engine, {(start + timedelta(days=n)).date() for n in range((end - start).days)})
        hours = ("FROM generate_series(CAST(:start AS timestamptz), :end - interval '1 hour',"
                 " interval '1 hour') ts")
        ids = {"v": YEAR_VEHICLE, "m": YEAR_METER, "start": start, "end": end}
        with engine.begin() as conn:
            for statement in (
                f"INSERT INTO vehicle_readings SELECT :v, ts, 50, 7.2, 20 + extract(hour FROM ts) {hours}"
                " ON CONFLICT DO NOTHING",
                f"INSERT INTO meter_readings SELECT :m, ts, 8, 230 {hours} ON CONFLICT DO NOTHING",
                "INSERT INTO meter_links VALUES (:m, :start, :v) ON CONFLICT DO NOTHING",
                "INSERT INTO live_vehicles SELECT * FROM vehicle_readings WHERE vehicle_id = :v"
                " ORDER BY ts DESC LIMIT 1 ON CONFLICT DO NOTHING",
                "INSERT INTO live_meters SELECT * FROM meter_readings WHERE meter_id = :m"
                " ORDER BY ts DESC LIMIT 1 ON CONFLICT DO NOTHING",
            ):
                conn.execute(text(statement), ids)
        rollups.rebuild(engine, start, end)
    finally:
        engine.dispose()
