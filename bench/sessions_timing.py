"""Timing of the charging-session endpoints, for the bench (after scenario 5's backfill).

`time_sessions(base_url, token, vehicle_ids, start, end)` times, over HTTP against a
running web process:

- one vehicle's sessions over the window (`GET /v1/analytics/performance/{id}/sessions`),
  one call per vehicle id, in turn; target: under 20 ms;
- the fleet's worst 100 sessions over the window (`GET /v1/analytics/sessions?limit=100`),
  `fleet_calls` calls, the first a warm-up; target: under 1 s.

It returns the figures (milliseconds) and sends nothing but GETs. Standalone:
`python bench/sessions_timing.py URL TOKEN FROM TO V-00001 V-00002 ...`.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import time
import urllib.parse
from datetime import datetime

VEHICLE_TARGET_MS = 20.0
FLEET_TARGET_MS = 1000.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class _Client:
    """GETs over one kept-alive connection, as a dashboard's browser would send them."""

    def __init__(self, base_url: str, token: str) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def timed_get(self, path: str, params: dict) -> tuple[float, dict]:
        started = time.perf_counter()
        self.conn.request("GET", f"{path}?{urllib.parse.urlencode(params)}", headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return elapsed_ms, json.loads(body)

    def close(self) -> None:
        self.conn.close()


def time_sessions(base_url: str, token: str, vehicle_ids: list[str], start: datetime, end: datetime,
                  fleet_calls: int = 4) -> dict:
    """Latencies (ms) of both session endpoints over [start, end); see the module docstring."""
    window = {"from": start.isoformat(), "to": end.isoformat()}
    client = _Client(base_url, token)
    try:
        vehicle_ms, sessions_seen = [], 0
        for vehicle_id in vehicle_ids:
            elapsed, body = client.timed_get(
                f"/v1/analytics/performance/{urllib.parse.quote(vehicle_id)}/sessions", window)
            vehicle_ms.append(elapsed)
            sessions_seen += len(body["sessions"])
        fleet_ms, total = [], None
        for _ in range(fleet_calls):
            elapsed, body = client.timed_get("/v1/analytics/sessions", {**window, "limit": 100})
            fleet_ms.append(elapsed)
            total = body["page"]["total"]
    finally:
        client.close()
    measured = fleet_ms[1:] or fleet_ms  # the first call warms the caches
    return {
        "vehicle_sessions_ms": {"p50": statistics.median(vehicle_ms), "p99": _percentile(vehicle_ms, 0.99),
                                "calls": len(vehicle_ms), "target": VEHICLE_TARGET_MS,
                                "sessions_per_vehicle": sessions_seen / max(1, len(vehicle_ids))},
        "fleet_worst_100_ms": {"p50": statistics.median(measured), "max": max(measured),
                               "calls": len(measured), "target": FLEET_TARGET_MS, "sessions": total},
    }


if __name__ == "__main__":
    url, token, from_ts, to_ts, *ids = sys.argv[1:]
    print(time_sessions(url, token, ids, datetime.fromisoformat(from_ts), datetime.fromisoformat(to_ts)))
