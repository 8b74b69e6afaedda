"""A steady-rate ingest client with probes: how long a reading takes to become queryable.

wrk sends as fast as answers come back; this client keeps a fixed schedule
instead (SENDERS threads, so that a slow answer does not delay the next request)
and puts one probe vehicle reading, stamped with its send time, in each request.
A poller looks for the probes in live state every POLL_S and notes when each appears.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import UTC, datetime

import psycopg

from bench.config import DATABASE_URL, INGEST_TOKEN
from bench.stats import percentile

SENDERS = 32
POLL_S = 0.01
DEVICES = 20_000  # meters and vehicles (half each) that the non-probe readings cycle through
LATE_PROBES_S = 30  # after the last send, how long the poller waits for the last probes


class SteadyIngest:
    """POST `rate` readings/s as `per_request`-reading arrays for `duration_s`."""

    def __init__(self, port: int, prefix: str, rate: int, per_request: int, duration_s: float) -> None:
        self.port = port
        self.prefix = prefix
        self.per_request = per_request
        self.interval = per_request / rate
        self.n = n = int(duration_s / self.interval)
        self.sent = [0.0] * n  # send time of request k (0: not yet)
        self.seen: dict[int, float] = {}  # request k: when its probe was first visible
        self.post_ms = [0.0] * n
        self.lag_ms = [0.0] * n  # how late against the schedule request k went out
        self.status: list[int | None] = [None] * n
        self.probe_ids = {self.probe_id(k): k for k in range(n)}
        self.done = threading.Event()
        self.poll_until = float("inf")

    def probe_id(self, k: int) -> str:
        return f"{self.prefix}P{k}"

    def run(self) -> dict:
        """Send on schedule, wait for the probes, return send-to-visible percentiles."""
        self.t0 = time.time() + 0.5
        senders = [threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(SENDERS)]
        watcher = threading.Thread(target=self._poll, daemon=True)
        watcher.start()
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        self.poll_until = time.time() + LATE_PROBES_S
        self.done.set()
        watcher.join()
        return self._result()

    def _body(self, k: int, ts: str) -> str:
        """Request k's readings: meters and vehicles in turn, then its probe."""
        readings = []
        for j in range(self.per_request - 1):
            d = (k * self.per_request + j) % DEVICES
            if d % 2:
                readings.append({"vehicleId": f"{self.prefix}V{d // 2}", "soc": 50.0,
                                 "kwhDeliveredDc": 0.1, "batteryTemp": 25.0, "timestamp": ts})
            else:
                readings.append({"meterId": f"{self.prefix}M{d // 2}", "kwhConsumedAc": 0.12,
                                 "voltage": 230.0, "timestamp": ts})
        readings.append({"vehicleId": self.probe_id(k), "soc": 50.0, "kwhDeliveredDc": 0.1,
                         "batteryTemp": 25.0, "timestamp": ts})
        return json.dumps(readings)

    def _send(self, offset: int) -> None:
        """Send requests offset, offset + SENDERS, ... each at its scheduled time."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/json"}
        for k in range(offset, self.n, SENDERS):
            due = self.t0 + k * self.interval
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            now = time.time()
            ts = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            body = self._body(k, ts)
            self.sent[k] = now
            self.lag_ms[k] = (now - due) * 1000
            try:
                conn.request("POST", "/v1/ingest", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                self.status[k] = response.status
            except OSError:
                conn.close()
                self.status[k] = -1
            self.post_ms[k] = (time.time() - now) * 1000
        conn.close()

    def _poll(self) -> None:
        """Note when each accepted probe appears in live_vehicles, until all have or
        LATE_PROBES_S after the last send."""
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            while True:
                now = time.time()
                outstanding = [self.probe_id(k) for k in range(self.n) if self.sent[k]
                               and k not in self.seen and self.status[k] in (None, 202)]
                if outstanding:
                    found = conn.execute("SELECT vehicle_id FROM live_vehicles"
                                         " WHERE vehicle_id = ANY(%s)", (outstanding,)).fetchall()
                    stamp = time.time()
                    for (vid,) in found:
                        self.seen[self.probe_ids[vid]] = stamp
                elif self.done.is_set():
                    return
                if self.done.is_set() and now > self.poll_until:
                    return
                time.sleep(max(0.0, POLL_S - (time.time() - now)))

    def _result(self) -> dict:
        accepted = [k for k in range(self.n) if self.status[k] == 202]
        latencies = [(self.seen[k] - self.sent[k]) * 1000 for k in accepted if k in self.seen]
        span = max(self.sent) - min(s for s in self.sent if s) + self.interval
        return {
            "probes": len(accepted), "probes_seen": len(latencies),
            "non_202": self.n - len(accepted),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies, default=float("nan")),
            "sent_readings_per_s": len(accepted) * self.per_request / span,
            "max_send_lag_ms": max(self.lag_ms), "post_p50_ms": percentile(self.post_ms, 50),
            "post_p99_ms": percentile(self.post_ms, 99),
        }
