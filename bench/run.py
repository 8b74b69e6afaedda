#!/usr/bin/env python3
"""`make bench`: start the stack on a benchmark database, run the scenarios, report.

    .venv/bin/python bench/run.py [--quick] [--runs N] [--scenarios 1,2,...] [--keep-db]

Creates a fresh database `energy_bench` on the local PostgreSQL (dropped again at
the end unless --keep-db), uses the Redis key prefix `bench` (only those keys are
ever deleted), starts gunicorn (the Procfile's `web`) and, where a scenario needs
it, the Celery worker (the Procfile's `worker`) as subprocesses in their own
process groups, runs the scenarios, stops everything (also on Ctrl-C or an
error), prints a table and writes bench/results.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://127.0.0.1/energy_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = "bench"
INGEST_TOKEN = "bench-ingest-token"
OPERATOR_TOKEN = "bench-operator-token"
LOGS = BENCH / "logs"
RESULTS = BENCH / "results.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The targets: (figure key, comparison, value).
TARGETS = {
    "s1_req_per_s": (">=", 4000),
    "s2_readings_per_s": (">=", 60000),
    "s3_drained_per_s": (">=", 50000),
    "s3_backlog_bounded": ("==", True),
    "s4_p99_ms": ("<=", 1000),
    "s5_seq_p99_ms": ("<=", 5),
    "s5_fleet_max_ms": ("<=", 1000),
    "s6_bytes_per_reading": ("<=", 100),
}


@dataclass(frozen=True)
class Sizes:
    s1_s: float  # seconds per wrk run
    s2_s: float
    s3_s: float
    s3_drain_wait_s: float  # longest wait for the backlog to empty after a run
    s4_s: float
    s5_s: float
    vehicles: int
    meters: int
    hours: float


FULL = Sizes(s1_s=30, s2_s=30, s3_s=60, s3_drain_wait_s=240, s4_s=30, s5_s=20,
             vehicles=10_000, meters=10_000, hours=24)
QUICK = Sizes(s1_s=5, s2_s=5, s3_s=10, s3_drain_wait_s=60, s4_s=6, s5_s=4,
              vehicles=300, meters=300, hours=24)


QUIET_PCT = 15  # % of a core that processes not ours may use before a run
FOREIGN = ("other", "postgres (other dbs)")


def foreign(cpu: dict[str, float]) -> float:
    """% of a core used by processes that are not the stack, its database or the load client."""
    return sum(cpu.get(k, 0.0) for k in FOREIGN)


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


# -- processes ------------------------------------------------------------------------


class Stack:
    """gunicorn and the Celery worker on the benchmark database and Redis prefix."""

    def __init__(self, web_concurrency: int | None, worker_concurrency: int | None) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("WEB_CONCURRENCY", "RATE_LIMIT", "RETENTION_DAYS")}
        self.env.update({
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": PREFIX,
            "INGEST_TOKENS": INGEST_TOKEN,
            "OPERATOR_TOKENS": OPERATOR_TOKEN,
            "MAX_BACKLOG": "100000000",
            "PORT": str(self.port),
        })
        if web_concurrency:
            self.env["WEB_CONCURRENCY"] = str(web_concurrency)
        self.worker_concurrency = worker_concurrency
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.worker_log: Path | None = None

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        LOGS.mkdir(exist_ok=True)
        path = LOGS / f"{name}.log"
        out = open(path, "ab")
        # Each command makes its own (empty) metrics directory, as in production.
        proc = subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=ROOT,
                                env={**self.env, **env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return proc, path

    def start_web(self) -> None:
        self.web, path = self._spawn("web", procfile_command("web"), {})
        deadline = time.monotonic() + 60
        while True:
            if self.web.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.web.returncode}); see {path}")
            try:
                if http_get(self.port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"web not ready within 60 s; see {path}")
            time.sleep(0.2)
        workers = len(children(self.web.pid))
        log(f"web up on port {self.port}: `{procfile_command('web')}`, {workers} worker processes")

    def start_worker(self, client: redis.Redis) -> None:
        command = procfile_command("worker") + f" --hostname bench-{os.getpid()}@%h"
        if self.worker_concurrency:
            command += f" --concurrency {self.worker_concurrency}"
        self.worker, path = self._spawn("worker", command,
                                        {"WORKER_METRICS_PORT": str(free_port())})
        # Ready once a drain is reading the queue: its consumer group has a consumer.
        deadline = time.monotonic() + 60
        while not any(g.get("consumers") for g in groups(client)):
            if self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.worker.returncode}); see {path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start draining within 60 s; see {path}")
            time.sleep(0.2)
        log(f"worker up: `{command}`, {len(children(self.worker.pid))} child processes "
            "(pool and embedded beat)")

    def stop_worker(self) -> None:
        stop_group(self.worker)
        self.worker = None

    def stop(self) -> None:
        stop_group(self.worker)
        stop_group(self.web)
        self.worker = self.web = None


def stop_group(proc: subprocess.Popen | None, timeout_s: float = 30) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    except ProcessLookupError:
        pass
    proc.wait(10)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def procfile_command(name: str) -> str:
    """The command of a Procfile process (`web`, `worker`), as deployments run it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise RuntimeError(f"the Procfile has no `{name}` process")


def groups(client: redis.Redis) -> list[dict]:
    try:
        return client.xinfo_groups(f"{PREFIX}:readings")
    except redis.ResponseError:  # no stream yet
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- CPU accounting -------------------------------------------------------------------


class CpuMeter:
    """CPU time by component between start() and stop(), from /proc: what used the cores."""

    def __init__(self, stack: Stack, db_name: str) -> None:
        self.stack = stack
        self.db_name = db_name

    def _category(self, pid: int, comm: str, pgrp: int) -> str:
        stack = self.stack
        if stack.web and pgrp == stack.web.pid:
            return "web"
        if stack.worker and pgrp == stack.worker.pid:
            return "worker"
        if comm == "postgres":
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = ""
            if f" {self.db_name} " in cmd:
                return "postgres"
            if "(" in cmd or "[local]" in cmd:
                return "postgres (other dbs)"
            return "postgres (background)"
        if comm.startswith("redis-server"):
            return "redis"
        if comm == "wrk" or pid == os.getpid():
            return "load client"
        if pgrp == os.getpgrp():
            return "bench tools"
        return "other"

    def _snapshot(self) -> tuple[dict[int, tuple[str, int]], list[int]]:
        procs = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2:].split()
            ticks = int(rest[11]) + int(rest[12])
            procs[pid] = (self._category(pid, comm, int(rest[2])), ticks)
        with open("/proc/stat") as f:
            total = [int(x) for x in f.readline().split()[1:]]
        return procs, total

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before, self.total0 = self._snapshot()

    def stop(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Percent of one core per component (200 = both cores busy), plus `machine busy`."""
        after, total1 = self._snapshot()
        wall = time.monotonic() - self.t0
        used: dict[str, float] = {}
        for pid, (category, ticks) in after.items():
            delta = ticks - self.before.get(pid, (category, 0))[1]
            used[category] = used.get(category, 0.0) + delta / CLK_TCK
        for category, seconds in (extra or {}).items():
            used[category] = used.get(category, 0.0) + seconds
        out = {k: round(100 * v / wall, 1) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
               if v / wall >= 0.005}
        delta = [b - a for a, b in zip(self.total0, total1, strict=True)]
        idle = delta[3] + delta[4]
        out["machine busy"] = round(100 * os.cpu_count() * (1 - idle / max(1, sum(delta))), 1)
        return out


# -- wrk --------------------------------------------------------------------------------


def run_wrk(args: list[str], duration_s: float, threads: int, connections: int,
            timeout_s: int = 30) -> dict:
    """Run wrk; returns its BENCH_JSON line plus its own CPU use (from wait4)."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s",
            "--timeout", f"{timeout_s}s", *args]
    out_path = LOGS / "wrk.out"
    with open(out_path, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
    text = out_path.read_text(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(argv)}\n{text}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["seconds"] = result["duration_us"] / 1e6
    result["ok"] = result["requests"] - result["status_errors"]
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    # Share of wrk's threads' capacity used: near 100 % would mean wrk is the limit.
    result["cpu_pct_of_threads"] = round(100 * result["cpu_s"] / (wall * threads), 1)
    bad = {k: result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts",
                                  "status_errors") if result[k]}
    if bad:
        log(f"  wrk reported errors: {bad}")
    return result


def ensure_wrk() -> str:
    """wrk on PATH, installed from Debian's packages if missing (as .ci/run does for its tools)."""
    if shutil.which("wrk") is None:
        log("wrk is missing: installing it (apt-get install wrk)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                       check=True, env=env)
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0].strip()


# -- database and Redis -------------------------------------------------------------------


def checkpoint() -> None:
    """Write back the dirty pages that earlier runs left, so that a run does not pay
    for its predecessor's writes (after scenario 3, PostgreSQL checkpoints for a while)."""
    try:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:  # not allowed (pg_checkpoint role missing): measure anyway
        log(f"  CHECKPOINT refused ({exc.sqlstate}): runs may pay for earlier runs' writes")


def admin_conninfo() -> str:
    return make_conninfo(**{**conninfo_to_dict(DATABASE_URL), "dbname": "postgres"})


def db_name() -> str:
    return conninfo_to_dict(DATABASE_URL)["dbname"]


def recreate_database() -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name())))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name())))
    subprocess.run([str(VENV_BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": DATABASE_URL}, capture_output=True)


def drop_database() -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name())))


def flush_prefix(client: redis.Redis) -> int:
    """Delete every key under our prefix, and nothing else."""
    deleted = 0
    batch = []
    for key in client.scan_iter(match=f"{PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def backlog(client: redis.Redis) -> int:
    return int(client.get(f"{PREFIX}:backlog") or 0)


def history_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT (SELECT count(*) FROM meter_readings)"
                        " + (SELECT count(*) FROM vehicle_readings)").fetchone()[0]


def wait_backlog_empty(client: redis.Redis, limit_s: float) -> float | None:
    """Seconds until the backlog reached 0, or None if it did not within limit_s."""
    started = time.monotonic()
    while backlog(client) > 0:
        if time.monotonic() - started > limit_s:
            return None
        time.sleep(0.2)
    return time.monotonic() - started


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median_of(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    if isinstance(values[0], bool):
        return sum(values) * 2 > len(values)  # the majority
    return statistics.median(values)


# -- scenarios ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.runs = args.runs
        self.stack = Stack(args.web_concurrency, args.worker_concurrency)
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.cpu = CpuMeter(self.stack, db_name())
        self.figures: dict[str, object] = {}
        self.details: dict[str, object] = {}
        self.base_url = ""

    # helpers

    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port}"

    def ingest_wrk(self, prefix: str, per: int, duration: float, threads: int, conns: int,
                   after=None, stamped_from_s: int = 600) -> dict:
        """wrk POSTing `per` readings a request, stamped from `stamped_from_s` ago
        on (a second per round of devices: at full speed the stamps run ahead of
        the clock); `after` is called the moment wrk ends."""
        base = int(time.time()) - stamped_from_s
        self.cpu.start()
        result = run_wrk(["-s", "bench/wrk/ingest.lua", self.url(), "--", INGEST_TOKEN, prefix,
                          str(per), str(base)], duration, threads, conns)
        if after:
            after(result)
        result["cpu_pct"] = self.cpu.stop()
        result["readings"] = result["ok"] * per
        return result

    def fresh_queue(self) -> None:
        flush_prefix(self.redis)

    def wait_quiet(self) -> None:
        """Before a measured run: flush what earlier runs wrote (CHECKPOINT), then wait
        (up to --quiet-wait s) until processes that are not ours use less than
        QUIET_PCT of a core, so another job's burst does not count."""
        checkpoint()
        deadline = time.monotonic() + self.args.quiet_wait
        said = False
        while self.args.quiet_wait > 0:
            self.cpu.start()
            time.sleep(1)
            busy = foreign(self.cpu.stop())
            if busy < QUIET_PCT:
                return
            if time.monotonic() > deadline:
                log(f"  other processes still use {busy:.0f} % of a core: measuring anyway")
                return
            if not said:
                log(f"  other processes use {busy:.0f} % of a core: waiting up to "
                    f"{self.args.quiet_wait:g} s for them to quiet down")
                said = True

    # 0: the load client's ceiling

    def client_ceiling(self) -> None:
        log("load client check: wrk against GET /healthz, 64 connections, 5 s")
        self.wait_quiet()
        self.cpu.start()
        r = run_wrk(["-s", "bench/wrk/get.lua", self.url(), "--", "-", "/healthz", "1"],
                    5, 2, 64)
        cpu = self.cpu.stop()
        self.figures["client_healthz_req_per_s"] = round(r["ok"] / r["seconds"])
        self.details["client_ceiling"] = {
            "healthz_req_per_s": round(r["ok"] / r["seconds"]),
            "wrk_cpu_pct_of_its_threads": r["cpu_pct_of_threads"], "cpu_pct": cpu}
        log(f"  /healthz: {r['ok'] / r['seconds']:,.0f} req/s; wrk used {r['cpu_pct_of_threads']} % "
            f"of its 2 threads; CPU by component (% of a core): {cpu}")

    # 1

    def scenario_1(self) -> None:
        log("scenario 1: single-reading POST /v1/ingest, 64 connections (wrk -t2 -c64), "
            f"{self.sizes.s1_s:g} s x {self.runs} (worker stopped: acceptance only)")
        self.fresh_queue()
        self.ingest_wrk("w1", 1, 3, 2, 64)  # warm-up
        runs = []
        for i in range(self.runs):
            self.fresh_queue()
            self.wait_quiet()
            r = self.ingest_wrk(f"s1r{i}", 1, self.sizes.s1_s, 2, 64)
            runs.append({"req_per_s": r["ok"] / r["seconds"], "p50_ms": r["p50_us"] / 1000,
                         "p99_ms": r["p99_us"] / 1000, "non_202": r["status_errors"],
                         "wrk_cpu_pct_of_threads": r["cpu_pct_of_threads"], "cpu_pct": r["cpu_pct"]})
            log(f"  run {i + 1}: {runs[-1]['req_per_s']:,.0f} req/s, p50 {runs[-1]['p50_ms']:.1f} ms, "
                f"p99 {runs[-1]['p99_ms']:.1f} ms; wrk {r['cpu_pct_of_threads']} % of its threads; "
                f"CPU {r['cpu_pct']}")
        self.fresh_queue()
        self.figures["s1_req_per_s"] = round(median_of(runs, "req_per_s"))
        self.figures["s1_p50_ms"] = round(median_of(runs, "p50_ms"), 2)
        self.figures["s1_p99_ms"] = round(median_of(runs, "p99_ms"), 2)
        self.details["s1_runs"] = runs

    # 2

    def scenario_2(self) -> None:
        log("scenario 2: bulk POST of 1,000-reading arrays, 16 connections (wrk -t2 -c16), "
            f"{self.sizes.s2_s:g} s x {self.runs} (worker stopped: acceptance only)")
        self.fresh_queue()
        self.ingest_wrk("w2", 1000, 3, 2, 16)
        runs = []
        for i in range(self.runs):
            self.fresh_queue()
            self.wait_quiet()
            r = self.ingest_wrk(f"s2r{i}", 1000, self.sizes.s2_s, 2, 16)
            runs.append({"readings_per_s": r["readings"] / r["seconds"],
                         "req_per_s": r["ok"] / r["seconds"], "p50_ms": r["p50_us"] / 1000,
                         "p99_ms": r["p99_us"] / 1000, "non_202": r["status_errors"],
                         "wrk_cpu_pct_of_threads": r["cpu_pct_of_threads"], "cpu_pct": r["cpu_pct"]})
            log(f"  run {i + 1}: {runs[-1]['readings_per_s']:,.0f} readings/s "
                f"({runs[-1]['req_per_s']:.1f} req/s, p50 {runs[-1]['p50_ms']:.0f} ms, "
                f"p99 {runs[-1]['p99_ms']:.0f} ms); wrk {r['cpu_pct_of_threads']} % of its threads; "
                f"CPU {r['cpu_pct']}")
        self.fresh_queue()
        self.figures["s2_readings_per_s"] = round(median_of(runs, "readings_per_s"))
        self.details["s2_runs"] = runs

    # 3

    def scenario_3(self) -> None:
        s = self.sizes
        log(f"scenario 3: end to end, 1,000-reading arrays at full speed (wrk -t2 -c16) for "
            f"{s.s3_s:g} s while the worker drains, x {self.runs}")
        runs = []
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            for i in range(self.runs):
                if (waited := wait_backlog_empty(self.redis, s.s3_drain_wait_s)) is None:
                    log("  the backlog did not empty before the run: flushing it")
                    self.stack.stop_worker()
                    self.fresh_queue()
                    self.stack.start_worker(self.redis)
                self.wait_quiet()
                # count(*) sees what was committed when it starts: the drained rows between
                # the two counts are exact, whatever the counts themselves take.
                t0 = time.monotonic()
                rows0 = history_count(conn)
                end: dict = {}

                def at_end(_result: dict, end: dict = end) -> None:
                    end["backlog"] = backlog(self.redis)
                    end["t"] = time.monotonic()
                    end["rows"] = history_count(conn)

                samples: list[tuple[float, int]] = []
                stop = threading.Event()

                def sample(stop: threading.Event, samples: list) -> None:
                    t0 = time.monotonic()
                    while not stop.wait(1.0):
                        samples.append((round(time.monotonic() - t0, 1), backlog(self.redis)))

                sampler = threading.Thread(target=sample, args=(stop, samples), daemon=True)
                sampler.start()
                # Current readings, as a live fleet sends: stamped 10 minutes back,
                # a run in the first minutes of an hour would send only late
                # readings of an hour already rolled up (README: rollups).
                r = self.ingest_wrk(f"s3r{i}", 1000, s.s3_s, 2, 16, after=at_end,
                                    stamped_from_s=60)
                stop.set()
                sampler.join()
                backlog_end = end["backlog"]
                rate = (end["rows"] - rows0) / (end["t"] - t0)
                half = [b for t, b in samples if t >= r["seconds"] / 2]
                growth = (half[-1] - half[0]) / (r["seconds"] / 2) if len(half) > 1 else 0.0
                # Bounded: what is queued at the end is drained within the contract's 5 s.
                bounded = backlog_end <= 5 * rate
                waited = wait_backlog_empty(self.redis, s.s3_drain_wait_s)
                rows1 = history_count(conn) if waited is not None else None
                run = {"drained_per_s": rate, "accepted_per_s": r["readings"] / r["seconds"],
                       # 503s: the queue's limits (MAX_BACKLOG_SECONDS) turning the excess away
                       "refused_requests": r["status_errors"],
                       "backlog_end": backlog_end, "backlog_max": max([b for _, b in samples],
                                                                      default=backlog_end),
                       "backlog_growth_per_s_2nd_half": round(growth),
                       "backlog_bounded": bounded,
                       "seconds_to_empty_after": None if waited is None else round(waited, 1),
                       "rows_stored": None if rows1 is None else rows1 - rows0,
                       "readings_accepted": r["readings"], "post_p50_ms": r["p50_us"] / 1000,
                       "post_p99_ms": r["p99_us"] / 1000,
                       "wrk_cpu_pct_of_threads": r["cpu_pct_of_threads"], "cpu_pct": r["cpu_pct"],
                       "backlog_samples": samples}
                runs.append(run)
                # wrk does not count the (at most 16) requests in flight when it stops.
                consistent = rows1 is not None and 0 <= rows1 - rows0 - r["readings"] <= 16 * 1000
                run["stored_matches_accepted"] = consistent
                check = ("" if rows1 is None else
                         f"; stored {rows1 - rows0:,} rows for {r['readings']:,} counted by wrk"
                         + (" (consistent)" if consistent else " (MISMATCH)"))
                log(f"  run {i + 1}: drained {rate:,.0f} readings/s while accepting "
                    f"{run['accepted_per_s']:,.0f}/s ({r['status_errors']:,} requests refused "
                    f"with 503); backlog at end {backlog_end:,} "
                    f"(max {run['backlog_max']:,}, 2nd-half growth {growth:,.0f}/s), "
                    f"emptied {run['seconds_to_empty_after']} s after{check}; CPU {r['cpu_pct']}")
        self.figures["s3_drained_per_s"] = round(median_of(runs, "drained_per_s"))
        self.figures["s3_accepted_per_s"] = round(median_of(runs, "accepted_per_s"))
        self.figures["s3_backlog_end"] = round(median_of(runs, "backlog_end"))
        self.figures["s3_backlog_bounded"] = median_of(runs, "backlog_bounded")
        self.details["s3_runs"] = runs

    # 4

    def scenario_4(self) -> None:
        s = self.sizes
        log(f"scenario 4: ingest-to-queryable at a steady 10,000 readings/s (100 req/s x 100 "
            f"readings, one probe each), {s.s4_s:g} s x {self.runs}")
        runs = []
        for i in range(self.runs):
            if wait_backlog_empty(self.redis, s.s3_drain_wait_s) is None:
                log("  the backlog did not empty: flushing it")
                self.stack.stop_worker()
                self.fresh_queue()
                self.stack.start_worker(self.redis)
            self.wait_quiet()
            self.cpu.start()
            r = steady_ingest(self.stack.port, f"s4r{i}", 10_000, 100, s.s4_s)
            r["cpu_pct"] = self.cpu.stop()
            runs.append(r)
            log(f"  run {i + 1}: {r['sent_readings_per_s']:,.0f} readings/s sent "
                f"(max lag behind schedule {r['max_send_lag_ms']:.0f} ms), probes "
                f"{r['probes_seen']}/{r['probes']} visible: p50 {r['p50_ms']:.0f} ms, "
                f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms; POST p99 "
                f"{r['post_p99_ms']:.0f} ms; CPU {r['cpu_pct']}")
        self.figures["s4_p50_ms"] = round(median_of(runs, "p50_ms"), 1)
        self.figures["s4_p99_ms"] = round(median_of(runs, "p99_ms"), 1)
        self.figures["s4_rate"] = round(median_of(runs, "sent_readings_per_s"))
        self.details["s4_runs"] = runs

    # 5

    def backfill(self) -> None:
        s = self.sizes
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # A whole UTC day two days back: one partition per table, touched by no other scenario.
        self.day_end = today - timedelta(days=1)
        self.day_start = self.day_end - timedelta(hours=s.hours)
        rows = (s.vehicles + s.meters) * round(s.hours * 60)
        log(f"backfill: python -m simulator backfill --vehicles {s.vehicles} --meters {s.meters} "
            f"--hours {s.hours:g} --end {iso(self.day_end)} ({rows:,} rows)")
        if not (ROOT / "simulator" / "__main__.py").exists():
            raise RuntimeError("simulator/ is missing: scenarios 5 and 6 need its backfill")
        self.cpu.start()
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "simulator", "backfill", "--vehicles", str(s.vehicles),
             "--meters", str(s.meters), "--hours", f"{s.hours:g}", "--end", iso(self.day_end),
             "--database-url", DATABASE_URL, "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, env=self.stack.env)
        seconds = time.monotonic() - started
        cpu = self.cpu.stop()
        if out.returncode != 0:
            raise RuntimeError(f"backfill failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        for line in out.stdout.strip().splitlines():
            log(f"  {line}")
        self.details["backfill"] = {"rows": rows, "seconds": round(seconds, 1),
                                    "rows_per_s": round(rows / seconds), "cpu_pct": cpu,
                                    "window": [iso(self.day_start), iso(self.day_end)],
                                    "output": out.stdout}
        self.vehicle_width = len(str(s.vehicles))

    def scenario_5(self) -> None:
        s = self.sizes
        window = f"from={iso(self.day_start)}&to={iso(self.day_end)}"
        path_format = f"/v1/analytics/performance/V-%0{self.vehicle_width}d?{window}"
        # Sanity: the window holds a full day for a vehicle.
        status, body = http_get(self.stack.port, path_format % 1, OPERATOR_TOKEN)
        sample = json.loads(body)
        if status != 200:
            raise RuntimeError(f"analytics answered {status}: {body[:300]!r}")
        log(f"scenario 5: analytics over {iso(self.day_start)}..{iso(self.day_end)}, random "
            f"vehicles of {s.vehicles:,}; e.g. V-{1:0{self.vehicle_width}d}: {sample['readings']}")
        args = ["-s", "bench/wrk/get.lua", self.url(), "--", OPERATOR_TOKEN, path_format,
                str(s.vehicles)]
        run_wrk(args, 3, 2, 16)  # warm-up
        runs = []
        for i in range(self.runs):
            self.wait_quiet()
            self.cpu.start()
            seq = run_wrk(args, s.s5_s, 1, 1)
            seq_cpu = self.cpu.stop()
            self.cpu.start()
            conc = run_wrk(args, s.s5_s, 2, 16)
            conc_cpu = self.cpu.stop()
            runs.append({
                "seq_p50_ms": seq["p50_us"] / 1000, "seq_p99_ms": seq["p99_us"] / 1000,
                "seq_req_per_s": seq["ok"] / seq["seconds"], "seq_non_200": seq["status_errors"],
                "c16_p50_ms": conc["p50_us"] / 1000, "c16_p99_ms": conc["p99_us"] / 1000,
                "c16_req_per_s": conc["ok"] / conc["seconds"], "c16_non_200": conc["status_errors"],
                "seq_cpu_pct": seq_cpu, "c16_cpu_pct": conc_cpu,
                "wrk_cpu_pct_of_threads": max(seq["cpu_pct_of_threads"], conc["cpu_pct_of_threads"]),
            })
            x = runs[-1]
            log(f"  run {i + 1}: sequential p50 {x['seq_p50_ms']:.2f} ms, p99 {x['seq_p99_ms']:.2f} ms "
                f"({x['seq_req_per_s']:,.0f} req/s); 16 concurrent p50 {x['c16_p50_ms']:.2f} ms, "
                f"p99 {x['c16_p99_ms']:.2f} ms ({x['c16_req_per_s']:,.0f} req/s); "
                f"CPU at 16: {conc_cpu}")
        for key in ("seq_p50_ms", "seq_p99_ms", "c16_p50_ms", "c16_p99_ms"):
            self.figures[f"s5_{key}"] = round(median_of(runs, key), 2)
        self.figures["s5_c16_req_per_s"] = round(median_of(runs, "c16_req_per_s"))
        self.details["s5_runs"] = runs
        self.details["s5_split"] = self.analytics_split()
        self.fleet_timings(window)

    def fleet_timings(self, window: str) -> None:
        """GET /v1/analytics/fleet over the whole day (issue 4: within a second), sequentially."""
        path = f"/v1/analytics/fleet?{window}&sort=efficiency&limit=100"
        took = []
        for _ in range(7):
            t = time.perf_counter()
            status, body = http_get(self.stack.port, path, OPERATOR_TOKEN)
            took.append((time.perf_counter() - t) * 1000)
            if status != 200:
                raise RuntimeError(f"fleet answered {status}: {body[:300]!r}")
        vehicles = json.loads(body)["totals"]["vehicles"]
        self.figures["s5_fleet_p50_ms"] = round(statistics.median(took[1:]), 1)
        self.figures["s5_fleet_max_ms"] = round(max(took[1:]), 1)
        log(f"  fleet over the day ({vehicles:,} vehicles): median {self.figures['s5_fleet_p50_ms']} ms, "
            f"slowest {self.figures['s5_fleet_max_ms']} ms")

    def analytics_split(self) -> dict:
        """Where an analytics request's time goes: SQL alone (EXPLAIN ANALYZE), the query
        from Python (SQLAlchemy, pool, driver), and HTTP (wrk, above)."""
        from sqlalchemy import text

        from models.analytics import PERFORMANCE, vehicle_performance
        from models.db import create_db_engine
        from models.hours import window_params

        engine = create_db_engine(DATABASE_URL)
        rng = random.Random(7)
        ids = [f"V-{rng.randint(1, self.sizes.vehicles):0{self.vehicle_width}d}" for _ in range(300)]
        planning, execution, hits, reads = [], [], [], []
        try:
            with engine.connect() as conn:
                window = window_params(self.day_start, self.day_end)
                for vid in ids[:30]:
                    params = {"vehicle_id": vid, **window}
                    plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                                             + PERFORMANCE.text), params).scalar_one()[0]
                    planning.append(plan["Planning Time"])
                    execution.append(plan["Execution Time"])
                    hits.append(plan["Plan"].get("Shared Hit Blocks", 0))
                    reads.append(plan["Plan"].get("Shared Read Blocks", 0))
                plan_text = "\n".join(r[0] for r in conn.execute(
                    text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + PERFORMANCE.text),
                    {"vehicle_id": ids[0], **window}))
            in_process = []
            for vid in ids:
                t = time.perf_counter()
                vehicle_performance(engine, vid, self.day_start, self.day_end)
                in_process.append((time.perf_counter() - t) * 1000)
        finally:
            engine.dispose()
        split = {
            "sql_planning_ms_p50": round(statistics.median(planning), 3),
            "sql_execution_ms_p50": round(statistics.median(execution), 3),
            "sql_execution_ms_p99": round(percentile(execution, 99), 3),
            "shared_buffers_hit_p50": statistics.median(hits),
            "shared_buffers_read_p50": statistics.median(reads),
            "python_call_ms_p50": round(statistics.median(in_process[20:]), 3),
            "python_call_ms_p99": round(percentile(in_process[20:], 99), 3),
            "plan_example": plan_text,
        }
        log(f"  split: SQL planning {split['sql_planning_ms_p50']} ms + execution "
            f"{split['sql_execution_ms_p50']} ms (p50, EXPLAIN ANALYZE, {len(execution)} vehicles); "
            f"vehicle_performance() from Python {split['python_call_ms_p50']} ms p50 / "
            f"{split['python_call_ms_p99']} ms p99; the rest of the HTTP figure is Flask, gunicorn, TCP")
        return split

    # 6

    def scenario_6(self) -> None:
        day = self.day_start.date()
        tag = f"{day:%Y%m%d}"
        out: dict[str, dict] = {}
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            def measure(label: str, tables: list[str]) -> dict:
                size = heap = 0
                rows = 0
                for t in tables:
                    total, h, n = conn.execute(
                        sql.SQL("SELECT pg_total_relation_size({t}), pg_relation_size({t}),"
                                " (SELECT count(*) FROM {i})").format(
                            t=sql.Literal(t), i=sql.Identifier(t))).fetchone()
                    size += total
                    heap += h
                    rows += n
                entry = {"tables": tables, "rows": rows, "bytes": size, "heap_bytes": heap,
                         "index_bytes": size - heap,
                         "bytes_per_row": round(size / rows, 1) if rows else None}
                out[label] = entry
                return entry

            parts = {t: [r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_inherits JOIN pg_class c ON c.oid = inhrelid "
                "JOIN pg_class p ON p.oid = inhparent WHERE p.relname = %s ORDER BY 1", (t,))]
                for t in ("meter_readings", "vehicle_readings")}
            backfilled = measure("history, backfilled day (COPY)",
                                 [f"meter_readings_p{tag}", f"vehicle_readings_p{tag}"])
            measure("  meter readings of that day", [f"meter_readings_p{tag}"])
            measure("  vehicle readings of that day", [f"vehicle_readings_p{tag}"])
            others = [p for ps in parts.values() for p in ps if not p.endswith(tag)]
            if others:
                measure("history, other days (written by the drain)", others)
            measure("hourly rollups", ["meter_hourly", "vehicle_hourly"])
            measure("live state", ["live_meters", "live_vehicles"])
        self.figures["s6_bytes_per_reading"] = backfilled["bytes_per_row"]
        self.details["s6_storage"] = out
        for label, e in out.items():
            log(f"  {label}: {e['rows']:,} rows, {e['bytes'] / 2**20:,.1f} MiB "
                f"(heap {e['heap_bytes'] / 2**20:,.1f} + indexes/other {e['index_bytes'] / 2**20:,.1f}) "
                f"= {e['bytes_per_row']} bytes/row")

    # the run

    def wrk_cpu_max(self) -> None:
        values = [run["wrk_cpu_pct_of_threads"] for key, runs in self.details.items()
                  if key.endswith("_runs") for run in runs if "wrk_cpu_pct_of_threads" in run]
        ceiling = self.details.get("client_ceiling", {}).get("wrk_cpu_pct_of_its_threads")
        values += [ceiling] if ceiling is not None else []
        if values:
            self.figures["client_wrk_cpu_max_pct"] = max(values)

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.wrk_cpu_max()

    def _run(self) -> None:
        chosen = self.args.scenarios
        log(f"database {DATABASE_URL} (dropped and created), Redis {REDIS_URL} prefix '{PREFIX}:'")
        recreate_database()
        self.fresh_queue()
        self.stack.start_web()
        self.client_ceiling()
        if 1 in chosen:
            self.scenario_1()
        if 2 in chosen:
            self.scenario_2()
        if chosen & {3, 4}:
            self.fresh_queue()
            self.stack.start_worker(self.redis)
            if 3 in chosen:
                self.scenario_3()
            if 4 in chosen:
                self.scenario_4()
            wait_backlog_empty(self.redis, self.sizes.s3_drain_wait_s)
            self.stack.stop_worker()
            self.fresh_queue()
        if chosen & {5, 6}:
            self.backfill()
            if 5 in chosen:
                self.scenario_5()
            if 6 in chosen:
                log("scenario 6: storage")
                self.scenario_6()


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- scenario 4's client: a steady rate, and a poller that sees probes arrive ----------------


def steady_ingest(port: int, prefix: str, rate: int, per_request: int, duration_s: float) -> dict:
    """POST `rate` readings/s as `per_request`-reading arrays on a fixed schedule (32 sender
    threads, so a slow response does not delay the next request), each with one probe
    vehicle reading stamped with its send time; a poller watches live state in the
    database every 10 ms for the probes. Returns send-to-visible percentiles."""
    interval = per_request / rate
    n = int(duration_s / interval)
    sent = [0.0] * n
    seen: dict[int, float] = {}
    post_ms = [0.0] * n
    lag_ms = [0.0] * n
    status: list[int | None] = [None] * n
    senders = 32
    t0 = time.time() + 0.5
    done = threading.Event()
    probe_ids = {f"{prefix}P{k}": k for k in range(n)}

    def sender(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/json"}
        for k in range(offset, n, senders):
            due = t0 + k * interval
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            now = time.time()
            ts = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            readings = []
            for j in range(per_request - 1):
                d = (k * per_request + j) % 20_000
                if d % 2:
                    readings.append({"vehicleId": f"{prefix}V{d // 2}", "soc": 50.0,
                                     "kwhDeliveredDc": 0.1, "batteryTemp": 25.0, "timestamp": ts})
                else:
                    readings.append({"meterId": f"{prefix}M{d // 2}", "kwhConsumedAc": 0.12,
                                     "voltage": 230.0, "timestamp": ts})
            readings.append({"vehicleId": f"{prefix}P{k}", "soc": 50.0, "kwhDeliveredDc": 0.1,
                             "batteryTemp": 25.0, "timestamp": ts})
            body = json.dumps(readings)
            sent[k] = now
            lag_ms[k] = (now - due) * 1000
            try:
                conn.request("POST", "/v1/ingest", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status[k] = response.status
            except OSError:
                conn.close()
                status[k] = -1
            post_ms[k] = (time.time() - now) * 1000
        conn.close()

    def poller() -> None:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            while True:
                now = time.time()
                outstanding = [f"{prefix}P{k}" for k in range(n)
                               if sent[k] and k not in seen and status[k] in (None, 202)]
                if outstanding:
                    found = conn.execute("SELECT vehicle_id FROM live_vehicles"
                                         " WHERE vehicle_id = ANY(%s)", (outstanding,)).fetchall()
                    stamp = time.time()
                    for (vid,) in found:
                        seen[probe_ids[vid]] = stamp
                elif done.is_set():
                    return
                if done.is_set() and now > deadline[0]:
                    return
                time.sleep(max(0.0, 0.01 - (time.time() - now)))

    deadline = [float("inf")]
    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(senders)]
    watcher = threading.Thread(target=poller, daemon=True)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline[0] = time.time() + 30
    done.set()
    watcher.join()
    accepted = [k for k in range(n) if status[k] == 202]
    latencies = [(seen[k] - sent[k]) * 1000 for k in accepted if k in seen]
    span = max(sent) - min(s for s in sent if s) + interval
    return {
        "probes": len(accepted), "probes_seen": len(latencies),
        "non_202": n - len(accepted),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "sent_readings_per_s": len(accepted) * per_request / span,
        "max_send_lag_ms": max(lag_ms), "post_p50_ms": percentile(post_ms, 50),
        "post_p99_ms": percentile(post_ms, 99),
    }


# -- report ------------------------------------------------------------------------------------


ROWS = [
    # (figure, label, unit)
    ("client_healthz_req_per_s", "0 load client check: wrk on GET /healthz", "req/s"),
    ("client_wrk_cpu_max_pct", "0   wrk's CPU, most in any run", "% threads"),
    ("s1_req_per_s", "1 single-reading POST, 64 clients: throughput", "req/s"),
    ("s1_p50_ms", "1   latency p50", "ms"),
    ("s1_p99_ms", "1   latency p99", "ms"),
    ("s2_readings_per_s", "2 bulk POST (1,000-reading arrays): accepted", "readings/s"),
    ("s3_drained_per_s", "3 end to end: drained into history", "readings/s"),
    ("s3_accepted_per_s", "3   accepted meanwhile", "readings/s"),
    ("s3_backlog_end", "3   backlog at the end", "readings"),
    ("s3_backlog_bounded", "3   backlog bounded (end <= 5 s of drain)", ""),
    ("s4_p50_ms", "4 ingest-to-queryable at 10,000 readings/s: p50", "ms"),
    ("s4_p99_ms", "4   p99", "ms"),
    ("s4_rate", "4   rate achieved (the client's schedule kept?)", "readings/s"),
    ("s5_seq_p50_ms", "5 analytics, full day, sequential: p50", "ms"),
    ("s5_seq_p99_ms", "5   sequential p99", "ms"),
    ("s5_c16_p50_ms", "5   16 concurrent: p50", "ms"),
    ("s5_c16_p99_ms", "5   16 concurrent: p99", "ms"),
    ("s5_c16_req_per_s", "5   16 concurrent: throughput", "req/s"),
    ("s5_fleet_p50_ms", "5   fleet endpoint over the day: median", "ms"),
    ("s5_fleet_max_ms", "5   fleet endpoint: slowest of 6", "ms"),
    ("s6_bytes_per_reading", "6 storage: bytes per stored reading", "bytes"),
]


def met(key: str, value) -> bool | None:
    if key not in TARGETS or value is None:
        return None
    op, target = TARGETS[key]
    if op == ">=":
        return value >= target
    if op == "<=":
        return value <= target
    return value == target


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def contention(details: dict) -> dict[str, float]:
    """Per scenario, the most CPU (% of a core) that processes not ours used during a run."""
    out = {}
    for scenario in ("s1", "s2", "s3", "s4", "s5"):
        cpus = [run[k] for run in details.get(f"{scenario}_runs", [])
                for k in ("cpu_pct", "seq_cpu_pct", "c16_cpu_pct") if k in run]
        if cpus:
            out[scenario] = max(foreign(c) for c in cpus)
    return out


def report(figures: dict, details: dict) -> list[dict]:
    rows = []
    for key, label, unit in ROWS:
        if key not in figures:
            continue
        value = figures[key]
        target = TARGETS.get(key)
        ok = met(key, value)
        rows.append({"figure": key, "label": label, "value": value, "unit": unit,
                     "target": None if target is None else f"{target[0]} {fmt(target[1])}",
                     "met": ok})
    width = max(len(r["label"]) for r in rows) if rows else 10
    print()
    print(f"{'scenario / figure':<{width}}  {'median':>12}  {'unit':<10}  {'target':<12}  met?")
    print("-" * (width + 48))
    for r in rows:
        print(f"{r['label']:<{width}}  {fmt(r['value']):>12}  {r['unit']:<10}  "
              f"{r['target'] or '':<12}  {'' if r['met'] is None else ('yes' if r['met'] else 'NO')}")
    print()
    busy = contention(details)
    if busy:
        print("CPU used by processes outside the benchmark during the runs (most in any run, % of "
              "one core): " + ", ".join(f"{k} {v:.0f}" for k, v in busy.items()))
        if max(busy.values()) > QUIET_PCT:
            print("  WARNING: the machine was shared during some runs; their figures are low.")
        print()
    return rows


def machine_info(wrk_version: str) -> dict:
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                      .splitlines() if ln.startswith("model name")), platform.processor())
    with psycopg.connect(admin_conninfo()) as conn:
        pg = conn.execute("SELECT version()").fetchone()[0]
        pg_settings = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
            "('shared_buffers', 'synchronous_commit', 'max_wal_size', 'work_mem', 'fsync')").fetchall())
    info = redis.Redis.from_url(REDIS_URL).info()
    return {
        "nproc": os.cpu_count(), "cpu_model": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "postgresql": pg, "postgresql_settings": pg_settings,
        "redis": info.get("redis_version"),
        "redis_persistence": {"appendonly": info.get("aof_enabled"),
                              "rdb_changes_since_save": info.get("rdb_changes_since_last_save")},
        "python": platform.python_version(), "load_client": f"{wrk_version} (scenarios 1, 2, 3, 5); "
        "Python http.client, 32 threads, + psycopg poller (scenario 4)",
        "load_average_at_start": os.getloadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: short durations, a 300-vehicle backfill, 1 run")
    p.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3; 1 with --quick)")
    p.add_argument("--scenarios", default="1,2,3,4,5,6", help="comma-separated, e.g. 1,2")
    p.add_argument("--web-concurrency", type=int, default=None,
                   help="gunicorn workers (default: web/gunicorn_conf.py's one per core, gevent)")
    p.add_argument("--worker-concurrency", type=int, default=None,
                   help="Celery pool processes (default: Celery's, one per core)")
    p.add_argument("--quiet-wait", type=float, default=60,
                   help="before each run, wait up to this many seconds for other processes to "
                        f"use under {QUIET_PCT} %% of a core (0: never wait)")
    p.add_argument("--keep-db", action="store_true", help="keep the energy_bench database afterwards")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    try:
        args.scenarios = {int(x) for x in args.scenarios.split(",") if x.strip()}
    except ValueError:
        p.error("--scenarios takes numbers, e.g. 1,2,5")
    if not args.scenarios <= {1, 2, 3, 4, 5, 6}:
        p.error("scenarios are 1 to 6")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_version = ensure_wrk()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_services.py"), "--no-env-file",
                    "--quiet"], check=True, env={**os.environ, "DATABASE_URL": admin_conninfo(),
                                                 "REDIS_URL": REDIS_URL})
    LOGS.mkdir(exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    bench = Bench(args)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    started = datetime.now(UTC)
    machine = machine_info(wrk_version)
    if machine["load_average_at_start"][0] > 0.5:
        log(f"note: load average {machine['load_average_at_start'][0]:.2f} at start: something else "
            "is using the CPU, and the figures will show it")
    failed = None
    try:
        bench.run()
    except KeyboardInterrupt:
        failed = "interrupted"
        log("interrupted: stopping")
    except Exception as exc:  # report what we have, then fail
        failed = f"{type(exc).__name__}: {exc}"
        log(f"failed: {failed}")
    finally:
        bench.stack.stop()
        try:
            flush_prefix(bench.redis)
            if not args.keep_db:
                drop_database()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup: {exc}")
    rows = report(bench.figures, bench.details)
    results = {
        "timestamp": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "runs": args.runs, "scenarios": sorted(args.scenarios),
        "figures_are": f"medians of {args.runs} run(s); the backfill loads once",
        "failed": failed,
        "machine": machine,
        "setup": {
            "web": "gunicorn --config web/gunicorn_conf.py 'web:create_app()', gevent workers, "
                   f"WEB_CONCURRENCY={args.web_concurrency or 'default (one per core)'}",
            "worker": "celery worker --beat (Procfile), concurrency "
                      f"{args.worker_concurrency or 'default (one per core)'}; stopped in "
                      "scenarios 1, 2 (acceptance only) and 5 (nothing to drain)",
            "env": {k: bench.stack.env[k] for k in ("DATABASE_URL", "REDIS_PREFIX", "MAX_BACKLOG")},
            "sizes": vars(bench.sizes),
        },
        "table": rows,
        "foreign_cpu_pct_max": contention(bench.details),
        "figures": bench.figures,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "details": bench.details,
    }
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    if failed:
        print(f"bench failed: {failed} (logs in {LOGS.relative_to(ROOT)}/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
