"""Scenario 10, long windows (issue 17): analytics over the long backfill's days
(bench/long_backfill.py), over HTTP, and the longest drain wait behind a roll-up.

- per-vehicle performance over the whole window, random vehicles: p99;
- the fleet endpoint over the window, and over a day whose ends cut through
  hours (00:30 to 00:30: 2 x 30 minutes of edges per device): medians;
- V-YEAR's series with bucket=1d over its synthetic year: median;
- while `models.roll_up.roll_up` rolls 3 hours of the window up again
  (watermark moved back to them), two threads run drain transactions of late
  readings of those hours (50 a transaction, of random vehicles of the fleet):
  the longest wait for the watermark (FOR SHARE).

Extrapolation to the full fleet (10,000 vehicles and 10,000 meters) from a run
at D devices (vehicles and meters):
- per-vehicle p99 and the year's series do not depend on the fleet's size: each
  reads index ranges of one vehicle and its meters (daily rows, the edge hours
  and minutes), so the figure measured is the full fleet's;
- both fleet figures read a fixed number of rows per device (daily rows, or the
  edge hours' rollups and 2 x 30 minutes of history) plus a sort of the vehicles:
  linear in devices, so they are scaled by 20,000 / D (x 5 from the issue's
  4,000 devices);
- the drain wait is bounded by one roll-up transaction (a device range of
  models/roll_up.py: RANGE_DEVICES devices' hour; or a recompute of stored
  sessions, models/session_store.py: SESSION_HOURS of vehicle history) plus the
  drains already holding the lock, not by the fleet: the figure measured
  stands; the roll-up's time per hour is what grows, linearly with devices
  (scaled as the fleet figures).
At small sizes fixed costs (planning, round trips) dominate, and the scaled
fleet figures are loose upper bounds, not estimates.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from sqlalchemy import Engine, text

from bench.config import DATABASE_URL, OPERATOR_TOKEN, iso, log
from bench.long_backfill import YEAR_VEHICLE, Window
from bench.scenario import Figure, Scenario
from bench.stats import percentile
from models import roll_up as rollups
from models.db import create_db_engine
from models.rollups import WATERMARK_FOR_DRAIN
from models.store import Columns, store_batch

FULL_FLEET_DEVICES = 20_000
ROLLED_HOURS = 3


class LongWindows(Scenario):
    number = 10
    repeated = False  # hundreds of calls per figure; the load is the long part
    sizes = {"s10_calls": (200, 20)}  # per timed figure
    table = (
        Figure("s10_size", "10 long windows: loaded (days x vehicles + meters)", ""),
        Figure("s10_vehicle_p99_ms", "10   per vehicle over the window: p99 (any fleet size)", "ms",
               ("<=", 5)),
        Figure("s10_fleet_ms", "10   fleet over the window, as loaded: median", "ms"),
        Figure("s10_fleet_full_ms", "10   fleet over the window, full fleet (extrapolated)", "ms",
               ("<=", 1000)),
        Figure("s10_fleet_edges_ms", "10   fleet over a day cut at :30, as loaded: median", "ms"),
        Figure("s10_fleet_edges_full_ms", "10   fleet, day cut at :30, full fleet (extrapolated)", "ms",
               ("<=", 200)),
        Figure("s10_series_year_ms", "10   series bucket=1d over a year, one vehicle: median", "ms",
               ("<=", 20)),
        Figure("s10_drain_wait_max_ms", "10   longest drain wait behind a roll-up", "ms", ("<=", 100)),
    )

    def prepare(self) -> None:
        self.window = self.bench.long_window()
        log(f"scenario 10: long windows over {self.window.days} days of "
            f"{self.window.devices:,} devices, {self.size('s10_calls'):g} calls per figure")

    def run(self, i: int) -> dict:
        out = self.time_analytics(self.window, int(self.size("s10_calls")))
        engine = create_db_engine(DATABASE_URL)
        try:
            out.update(drain_wait_behind_roll_up(engine, self.window))
        finally:
            engine.dispose()
        scale = FULL_FLEET_DEVICES / self.window.devices
        out.update(scale=round(scale, 2), fleet_full_ms=round(out["fleet_ms"] * scale, 1),
                   fleet_edges_full_ms=round(out["fleet_edges_ms"] * scale, 1),
                   roll_up_s_per_hour_full=round(out["roll_up_s_per_hour"] * scale, 2))
        log(f"  per vehicle p50 {out['vehicle_p50_ms']} ms, p99 {out['vehicle_p99_ms']} ms; fleet "
            f"{out['fleet_ms']} ms (full fleet x {scale:g}: {out['fleet_full_ms']} ms); day cut at :30 "
            f"{out['fleet_edges_ms']} ms (full: {out['fleet_edges_full_ms']} ms); year series "
            f"{out['series_year_ms']} ms; drain wait max {out['drain_wait_max_ms']} ms (p99 "
            f"{out['drain_wait_p99_ms']} ms) over "
            f"{out['drains_during_roll_up']} drains, roll-up {out['roll_up_s_per_hour']} s/hour "
            f"(full: {out['roll_up_s_per_hour_full']} s)")
        return out

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        w, run = self.window, runs[0]
        figures = {f"s10_{key}": run[key] for key in (
            "vehicle_p99_ms", "fleet_ms", "fleet_full_ms", "fleet_edges_ms", "fleet_edges_full_ms",
            "series_year_ms", "drain_wait_max_ms")}
        return {"s10_size": f"{w.days} x {w.devices // 2:,} + {w.devices // 2:,}", **figures}

    def time_analytics(self, w: Window, calls: int) -> dict:
        """The analytics figures, over HTTP (module docstring)."""
        rng = random.Random(17)
        window = {"from": iso(w.start), "to": iso(w.end)}
        per_vehicle = [self.get(f"/v1/analytics/performance/{quote(rng.choice(w.vehicles))}", window)
                       for _ in range(calls + 10)][10:]  # the first ten warm up

        def fleet(start: datetime, end: datetime) -> float:
            took = [self.get("/v1/analytics/fleet", {"from": iso(start), "to": iso(end)})
                    for _ in range(max(3, calls // 20) + 1)]
            return round(statistics.median(took[1:]), 1)

        day_end = w.end - timedelta(days=1) + timedelta(minutes=30)
        year = {"from": iso(w.year_start), "to": iso(w.start), "bucket": "1d"}
        series = [self.get(f"/v1/analytics/performance/{YEAR_VEHICLE}/series", year)
                  for _ in range(calls + 1)][1:]
        return {"vehicle_p50_ms": round(statistics.median(per_vehicle), 2),
                "vehicle_p99_ms": round(percentile(per_vehicle, 99), 2),
                "vehicle_slowest_ms": [round(ms, 1) for ms in sorted(per_vehicle)[-5:]],
                "fleet_ms": fleet(w.start, w.end),
                "fleet_edges_ms": fleet(day_end - timedelta(days=1), day_end),
                "series_year_ms": round(statistics.median(series), 2)}

    def get(self, path: str, query: dict) -> float:
        return self.bench.stack.timed_get(f"{path}?{urlencode(query)}", OPERATOR_TOKEN, 120)[0]


def drain_wait_behind_roll_up(engine: Engine, w: Window) -> dict:
    """Roll ROLLED_HOURS hours of the window up again (the watermark moved back to
    them) while two threads run drain transactions of late readings of those
    hours; the longest time a drain's watermark lock took, and the roll-up's pace.
    The watermark goes back where it was afterwards (the hours after were rolled up)."""
    first = w.end - timedelta(hours=ROLLED_HOURS + 1)
    with engine.begin() as conn:
        was = conn.execute(text("SELECT rolled_up_until FROM rollup_watermark")).scalar_one()
        conn.execute(text("UPDATE rollup_watermark SET rolled_up_until = :w, rolling_device = NULL"),
                     {"w": first})
    waits: list[float] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def drain(n: int) -> None:
        # Late readings of the fleet's own vehicles, each with DC: their rollups and
        # stored sessions change, as real late readings change them.
        rng = random.Random(n)
        try:
            while not stop.is_set():
                rows = [[rng.choice(w.vehicles),
                         (first + timedelta(seconds=rng.uniform(0, ROLLED_HOURS * 3600))).isoformat(),
                         50.0, 0.1, 30.0] for _ in range(50)]
                vehicles = Columns.of(("device", "ts", "soc", "dc", "temp"), rows)
                with engine.begin() as conn:
                    started = time.perf_counter()
                    conn.exec_driver_sql(WATERMARK_FOR_DRAIN)
                    waits.append((time.perf_counter() - started) * 1000)
                    store_batch(conn, Columns(("device", "ts", "ac", "voltage")), vehicles)
                time.sleep(0.01)
        except BaseException as exc:  # the scenario fails with it, below
            failed.append(exc)

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        before = len(waits)
        started = time.perf_counter()
        rolled = rollups.roll_up(engine, first + timedelta(hours=ROLLED_HOURS) + rollups.SETTLE,
                                 max_hours=ROLLED_HOURS)
        took = time.perf_counter() - started
        during = waits[before:] or [0.0]
    finally:
        stop.set()
        for t in threads:
            t.join()
        with engine.begin() as conn:
            conn.execute(text("UPDATE rollup_watermark SET rolled_up_until = :w, rolling_device = NULL"
                              " WHERE rolled_up_until < :w"), {"w": was})
    if failed:
        raise RuntimeError(f"a drain thread failed: {failed[0]!r}") from failed[0]
    return {"drain_wait_max_ms": round(max(during), 1),
            "drain_wait_p50_ms": round(statistics.median(during), 2),
            "drain_wait_p99_ms": round(percentile(during, 99), 1),
            "drains_during_roll_up": len(during),
            "roll_up_s_per_hour": round(took / max(rolled, 1), 3),
            "range_devices": rollups.RANGE_DEVICES}


SCENARIO = LongWindows
