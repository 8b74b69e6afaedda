"""The fleet simulator: its physical model, `backfill` into the test database, and
`live` against a real gunicorn (and against a stub that throttles every first try)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from sqlalchemy import text

from simulator import backfill, fleet, live
from tests.conftest import ROOT, wait_for

# -- the physical model ------------------------------------------------------------------


def test_the_model_charges_along_a_cc_cv_curve_within_the_contracts_ranges():
    profile = fleet.make_profile(500, degraded=50, seed=7)
    assert profile.degraded.sum() == 50
    assert ((profile.efficiency >= 0.70) & (profile.efficiency <= 0.80))[profile.degraded].all()
    assert ((profile.efficiency >= 0.85) & (profile.efficiency <= 0.95))[~profile.degraded].all()
    _, s = fleet.simulate(profile, 600, np.random.default_rng(7))
    assert ((s.soc >= 0) & (s.soc <= 100)).all()
    assert ((s.temp_c >= -50) & (s.temp_c <= 150)).all()
    assert (s.dc_kwh >= 0).all() and (s.ac_kwh >= 0).all() and (s.voltage > 0).all()
    charging = s.dc_kwh > 0
    assert 0.1 < charging.mean() < 0.6
    assert (s.ac_kwh[charging] > s.dc_kwh[charging]).all()
    assert (s.ac_kwh[~charging] == 0).all()
    # SoC rises while charging and the battery is warmer than when it is not.
    assert (np.diff(s.soc, axis=0)[charging[1:]] >= 0).all()
    assert s.temp_c[charging].mean() > s.temp_c[~charging].mean() + 3
    # Full power below 80 %, tapering above.
    assert fleet.taper(np.array([20.0, 79.0])).tolist() == [1.0, 1.0]
    assert 0 < fleet.taper(np.array([95.0]))[0] < 0.5


def test_the_model_is_seedable():
    a = fleet.simulate(fleet.make_profile(50, 5, seed=3), 60, np.random.default_rng(1))[1]
    b = fleet.simulate(fleet.make_profile(50, 5, seed=3), 60, np.random.default_rng(1))[1]
    assert np.array_equal(a.dc_kwh, b.dc_kwh) and np.array_equal(a.temp_c, b.temp_c)


def test_ids_are_zero_padded_to_the_fleet_width():
    assert fleet.device_ids("M", 10_000)[:2] == ["M-00001", "M-00002"]
    assert fleet.device_ids("V", 10_000)[-1] == "V-10000"
    assert fleet.device_ids("V", 5) == ["V-1", "V-2", "V-3", "V-4", "V-5"]


# -- backfill ------------------------------------------------------------------------------

FLEET = 20
HOURS = 2
MINUTES = HOURS * 60


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def test_backfill_writes_the_fleets_history_links_and_live_state(settings, engine, database_url):
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(hours=HOURS)
    summary = backfill.run(database_url, vehicles=FLEET, meters=FLEET, hours=HOURS, end=end,
                           degraded=3, seed=1, progress=False)
    assert (summary.start, summary.end) == (start, end)
    assert summary.tables["meter_readings"].inserted == FLEET * MINUTES
    assert summary.tables["vehicle_readings"].inserted == FLEET * MINUTES
    assert len(summary.degraded) == 3

    window = {"start": start, "end": end}
    for table, device in (("meter_readings", "meter_id"), ("vehicle_readings", "vehicle_id")):
        [(n, devices, first, last)] = rows(engine, f"""
            SELECT count(*), count(DISTINCT {device}), min(ts), max(ts) FROM {table}
            WHERE ts >= :start AND ts < :end""", **window)
        assert (n, devices, first, last) == (FLEET * MINUTES, FLEET, start, end - timedelta(minutes=1))

    links = rows(engine, "SELECT meter_id, vehicle_id, since FROM meter_links ORDER BY meter_id")
    assert links == [(f"M-{i:02d}", f"V-{i:02d}", start) for i in range(1, FLEET + 1)]

    # Live state is each device's newest reading.
    assert rows(engine, "SELECT * FROM live_meters ORDER BY meter_id") == rows(engine, """
        SELECT DISTINCT ON (meter_id) meter_id, ts, kwh_consumed_ac, voltage FROM meter_readings
        ORDER BY meter_id, ts DESC""")
    assert rows(engine, "SELECT * FROM live_vehicles ORDER BY vehicle_id") == rows(engine, """
        SELECT DISTINCT ON (vehicle_id) vehicle_id, ts, soc, kwh_delivered_dc, battery_temp
        FROM vehicle_readings ORDER BY vehicle_id, ts DESC""")

    # Every value within the contract's ranges (NaN would sort above everything).
    [(bad_meters,)] = rows(engine, """SELECT count(*) FROM meter_readings WHERE NOT (
        kwh_consumed_ac >= 0 AND kwh_consumed_ac < 'Infinity' AND voltage > 0 AND voltage < 'Infinity')""")
    [(bad_vehicles,)] = rows(engine, """SELECT count(*) FROM vehicle_readings WHERE NOT (
        soc BETWEEN 0 AND 100 AND battery_temp BETWEEN -50 AND 150
        AND kwh_delivered_dc >= 0 AND kwh_delivered_dc < 'Infinity')""")
    assert (bad_meters, bad_vehicles) == (0, 0)

    # Meter i feeds vehicle i: AC above DC while charging, nothing drawn otherwise.
    paired = rows(engine, """
        SELECT v.vehicle_id, m.kwh_consumed_ac, v.kwh_delivered_dc, v.battery_temp
        FROM meter_links l
        JOIN meter_readings m ON m.meter_id = l.meter_id
        JOIN vehicle_readings v ON v.vehicle_id = l.vehicle_id AND v.ts = m.ts""")
    assert len(paired) == FLEET * MINUTES
    charging = [(ac, dc) for _, ac, dc, _ in paired if dc > 0]
    assert len(charging) > MINUTES  # a good share of the fleet charges in two hours
    assert all(ac > dc for ac, dc in charging)
    assert all(ac == 0 for _, ac, dc, _ in paired if dc == 0)

    # Efficiency over the window, summed from the rows.
    efficiency = {vehicle: dc / ac for vehicle, ac, dc in rows(engine, """
        SELECT v.vehicle_id, sum(m.kwh_consumed_ac), sum(v.kwh_delivered_dc)
        FROM meter_links l
        JOIN meter_readings m ON m.meter_id = l.meter_id
        JOIN vehicle_readings v ON v.vehicle_id = l.vehicle_id AND v.ts = m.ts
        GROUP BY 1 HAVING sum(m.kwh_consumed_ac) > 0""")}
    degraded = {v: e for v, e in efficiency.items() if v in summary.degraded}
    healthy = {v: e for v, e in efficiency.items() if v not in summary.degraded}
    assert degraded and len(healthy) >= 5, efficiency
    assert all(0.70 <= e < 0.80 for e in degraded.values()), degraded
    assert all(0.85 <= e <= 0.95 for e in healthy.values()), healthy


def test_backfill_twice_keeps_what_is_stored(settings, engine, database_url):
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    first = backfill.run(database_url, 5, 5, 1, end, degraded=1, progress=False)
    before = rows(engine, "SELECT * FROM vehicle_readings ORDER BY vehicle_id, ts")
    again = backfill.run(database_url, 5, 5, 1, end, degraded=1, progress=False)
    assert (first.inserted, first.merged) == (600, False)
    assert (again.inserted, again.rows, again.merged) == (0, 600, True)
    assert rows(engine, "SELECT * FROM vehicle_readings ORDER BY vehicle_id, ts") == before
    assert rows(engine, "SELECT sum(readings) FROM vehicle_hourly") == [(300,)]


# -- live ----------------------------------------------------------------------------------


@pytest.fixture
def gunicorn(settings, unused_tcp_port, tmp_path):
    """The web process from the Procfile on a spare port, on this test's database and queue."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_PREFIX": settings.redis_prefix, "INGEST_TOKENS": "test-ingest",
           "OPERATOR_TOKENS": "test-operator", "PORT": str(unused_tcp_port), "WEB_CONCURRENCY": "2"}
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "web/server/gunicorn_conf.py", "web:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        wait_for(lambda: _healthy(url) or proc.poll() is not None, 30, "gunicorn to listen")
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield url
    finally:
        proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: nothing is in flight
        proc.wait(30)
        log.close()


def _healthy(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_live_posts_readings_that_the_queue_holds(gunicorn, queue, engine):
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "live", "--url", gunicorn, "--token", "test-ingest",
         "--operator-token", "test-operator", "--vehicles", "20", "--meters", "20", "--rate", "500",
         "--duration", "4", "--speed", "60", "--gateway-size", "5", "--gateway-share", "0.5",
         "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"live: ([\d,]+) readings accepted in ([\d,]+) requests", done.stdout)
    assert match, done.stdout
    accepted, requests = (int(g.replace(",", "")) for g in match.groups())
    # 40 devices, one reading each per simulated minute, a simulated minute a second.
    assert 40 <= accepted <= 40 * 6
    assert requests < accepted  # gateways post arrays
    assert queue.backlog() == accepted
    assert "errors: none" in done.stdout
    links = rows(engine, "SELECT meter_id, vehicle_id FROM meter_links ORDER BY meter_id")
    assert links == [(f"M-{i:02d}", f"V-{i:02d}") for i in range(1, 21)]


class ThrottlingStub(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 0) to the first try of every body, 202 to a retry of it."""

    seen: set[bytes] = set()
    posts = 0
    accepted = 0
    problems: list[str] = []

    @classmethod
    def reset(cls) -> None:
        cls.seen, cls.posts, cls.accepted, cls.problems = set(), 0, 0, []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(200, {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stub = type(self)
        stub.posts += 1
        if self.headers["Authorization"] != "Bearer tok":
            stub.problems.append(f"authorization {self.headers['Authorization']}")
        readings = json.loads(body)
        readings = readings if isinstance(readings, list) else [readings]
        if len(readings) > 4:
            stub.problems.append(f"an array of {len(readings)}")
        now = datetime.now(UTC)
        for r in readings:
            if datetime.fromisoformat(r["timestamp"]) > now:
                stub.problems.append(f"a timestamp in the future: {r['timestamp']}")
        if body not in stub.seen:
            stub.seen.add(body)
            self.answer(429, {"error": "slow down"}, {"Retry-After": "0"})
        else:
            stub.accepted += len(readings)
            self.answer(202, {"accepted": len(readings)})

    def answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_live_retries_the_same_body_after_retry_after():
    ThrottlingStub.reset()
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottlingStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        summary = live.run(live.Options(
            url=f"http://127.0.0.1:{server.server_port}", token="tok", vehicles=6, meters=6,
            rate=1000, duration=2, speed=120, gateway_size=4, gateway_share=0.5, degraded=1,
            progress=False))
    finally:
        server.shutdown()
        server.server_close()
    assert ThrottlingStub.problems == []
    assert summary.accepted == ThrottlingStub.accepted > 0
    assert summary.retries[429] == len(ThrottlingStub.seen)  # every body once
    assert summary.requests == ThrottlingStub.posts
    assert not summary.errors and summary.links == 6


def test_live_provisions_its_fleet_and_posts_with_its_own_tokens(gunicorn, queue, engine):
    """No fleet-wide token (--token is wrong): every request carries a device's or gateway's."""
    command = [sys.executable, "-m", "simulator", "live", "--url", gunicorn, "--token", "not-a-token",
               "--operator-token", "test-operator", "--vehicles", "10", "--meters", "10",
               "--rate", "500", "--duration", "3", "--speed", "60", "--gateway-size", "5",
               "--gateway-share", "0.5", "--no-progress", "--provision"]
    for _ in range(2):  # the second run finds the fleet registered and rotates its tokens
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "errors: none" in done.stdout and "provisioned 20 devices and 2 gateways" in done.stderr
    assert rows(engine, "SELECT count(*) FROM devices") == [(20,)]
    attached = rows(engine, "SELECT gateway_id, count(*) FROM gateway_devices GROUP BY 1 ORDER BY 1")
    assert attached == [("GW-1", 5), ("GW-2", 5)]
    assert queue.backlog() > 20


def test_live_after_backfill_continues_after_the_stored_history(settings, engine, database_url, gunicorn,
                                                                drain_all):
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    backfill.run(database_url, vehicles=5, meters=5, hours=1, end=end, degraded=1, seed=1, progress=False)
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "live", "--url", gunicorn, "--token", "test-ingest",
         "--operator-token", "test-operator", "--vehicles", "5", "--meters", "5", "--rate", "500",
         "--duration", "5", "--speed", "60", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "continuing from" in done.stderr, done.stderr
    drain_all()
    # One reading per device per minute, as the backfill wrote them: live added no second one.
    for table, device in (("meter_readings", "meter_id"), ("vehicle_readings", "vehicle_id")):
        twice = rows(engine, f"""SELECT {device}, date_trunc('minute', ts) FROM {table}
                                 GROUP BY 1, 2 HAVING count(*) > 1""")
        assert twice == [], f"{table}: minutes simulated twice: {twice[:5]}"
