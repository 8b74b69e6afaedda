"""The backfilled day: one whole UTC day of history that the simulator loads, once,
for the scenarios that read history (analytics, storage).

The day is two days back, so that it is a partition of its own that no other
scenario writes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.config import DATABASE_URL, ROOT, iso, log
from bench.cpu import CpuMeter

SIZES = {"vehicles": (10_000, 300), "meters": (10_000, 300), "hours": (24, 24)}


@dataclass(frozen=True)
class Day:
    start: datetime
    end: datetime
    vehicles: int

    def vehicle_id(self, n: int) -> str:
        """The simulator's id of vehicle n (from 1)."""
        return f"V-{n:0{self.vehicle_width}d}"

    @property
    def vehicle_width(self) -> int:
        return len(str(self.vehicles))


def load_day(sizes: dict, cpu: CpuMeter, env: dict[str, str]) -> tuple[Day, dict]:
    """Run `python -m simulator backfill`; returns the day and what the load took."""
    vehicles, meters, hours = sizes["vehicles"], sizes["meters"], sizes["hours"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today - timedelta(days=1)
    day = Day(start=end - timedelta(hours=hours), end=end, vehicles=vehicles)
    rows = (vehicles + meters) * round(hours * 60)
    log(f"backfill: python -m simulator backfill --vehicles {vehicles} --meters {meters} "
        f"--hours {hours:g} --end {iso(end)} ({rows:,} rows)")
    if not (ROOT / "simulator" / "__main__.py").exists():
        raise RuntimeError("simulator/ is missing: scenarios 5 and 6 need its backfill")
    cpu.start()
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "backfill", "--vehicles", str(vehicles),
         "--meters", str(meters), "--hours", f"{hours:g}", "--end", iso(end),
         "--database-url", DATABASE_URL, "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - started
    used = cpu.stop()
    if out.returncode != 0:
        raise RuntimeError(f"backfill failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    for line in out.stdout.strip().splitlines():
        log(f"  {line}")
    return day, {"rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds),
                 "cpu_pct": used, "window": [iso(day.start), iso(day.end)], "output": out.stdout}
