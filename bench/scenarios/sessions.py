"""Scenario 9, charging sessions over the backfilled day (issue 14), over HTTP:

- one vehicle's sessions of the day (GET /v1/analytics/performance/{id}/sessions),
  random vehicles in turn: p50 and p99; target under 20 ms;
- the fleet's worst 100 sessions of the day (GET /v1/analytics/sessions?limit=100),
  a few calls after a warm-up: median; target under 1 s.

A fleet call that fails or times out (gunicorn stops a request after 60 s) is
reported, not raised: the scenarios after this one still run.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics

from bench.config import OPERATOR_TOKEN, iso, log
from bench.scenario import Figure, Scenario
from bench.stats import median_of, percentile

FLEET_CALLS = 3


class Sessions(Scenario):
    number = 9
    sizes = {"s9_vehicles": (200, 50)}  # vehicle calls per run
    table = (
        Figure("s9_vehicle_p50_ms", "9 sessions, one vehicle's day: p50", "ms"),
        Figure("s9_vehicle_p99_ms", "9   one vehicle's day: p99", "ms", ("<=", 20)),
        Figure("s9_fleet_ms", "9   fleet's worst 100 of the day: median", "ms", ("<=", 1000)),
    )

    def prepare(self) -> None:
        self.day = self.bench.backfilled_day()
        self.window = f"from={iso(self.day.start)}&to={iso(self.day.end)}"
        self.rng = random.Random(14)
        log(f"scenario 9: charging sessions over {iso(self.day.start)}..{iso(self.day.end)}: "
            f"{self.size('s9_vehicles'):g} random vehicles of {self.day.vehicles:,} one after "
            f"another, then the fleet's worst 100 ({FLEET_CALLS} calls), x {self.bench.runs}")
        sessions = json.loads(self.get(self.vehicle_path(1))[1])["sessions"]
        log(f"  e.g. {self.day.vehicle_id(1)}: {len(sessions)} sessions")
        self.fleet_call()  # warm-up

    def vehicle_path(self, n: int) -> str:
        return f"/v1/analytics/performance/{self.day.vehicle_id(n)}/sessions?{self.window}"

    def get(self, path: str, timeout_s: float = 30) -> tuple[float, bytes]:
        return self.bench.stack.timed_get(path, OPERATOR_TOKEN, timeout_s)

    def fleet_call(self) -> float | None:
        """Milliseconds of one fleet call, or None (logged) if it failed."""
        try:
            return self.get(f"/v1/analytics/sessions?{self.window}&limit=100", 120)[0]
        except (OSError, http.client.HTTPException, RuntimeError) as exc:
            log(f"  the fleet's worst 100 sessions failed: {exc}")
            return None

    def run(self, i: int) -> dict:
        vehicle = [self.get(self.vehicle_path(self.rng.randint(1, self.day.vehicles)))[0]
                   for _ in range(int(self.size("s9_vehicles")))]
        fleet = [self.fleet_call() for _ in range(FLEET_CALLS)]
        ok = [ms for ms in fleet if ms is not None]
        run = {"vehicle_p50_ms": statistics.median(vehicle), "vehicle_p99_ms": percentile(vehicle, 99),
               "fleet_ms": statistics.median(ok) if len(ok) == len(fleet) else None,
               "fleet_calls_ms": fleet}
        log(f"  run {i + 1}: one vehicle's day p50 {run['vehicle_p50_ms']:.2f} ms, "
            f"p99 {run['vehicle_p99_ms']:.2f} ms; fleet's worst 100: "
            + ", ".join("failed" if ms is None else f"{ms:,.0f} ms" for ms in fleet))
        return run

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        figures = {key: median_of(runs, key) for key in ("vehicle_p50_ms", "vehicle_p99_ms", "fleet_ms")}
        return {f"s9_{key}": None if value is None else round(value, 2) for key, value in figures.items()}


SCENARIO = Sessions
