"""Scenario 18, end to end on a Redis Cluster: scenario 3's load (1,000-reading
arrays at full speed while a worker drains) with the queue in QUEUE_SHARDS=4
shards on a 3-master cluster that the scenario starts itself, beside scenario
3's figure on one plain Redis.

The cluster's nodes run with the plain Redis's persistence settings (read from
it), so that the two figures differ by the sharding and the cluster client, not
by fsync. Its own web and worker (the Procfile's commands with QUEUE_REDIS_URL
and QUEUE_SHARDS) run beside the stack's idle web; the stack's worker is
stopped. CPU per drained reading and per queue entry (100 readings) by
component is what docs/scaling.md sizes from.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import tempfile
import time

import psycopg
import redis

from bench.config import DATABASE_URL, PREFIX, REDIS_URL, log
from bench.cpu import us_per
from bench.scenario import Figure, Scenario
from bench.services import history_count, wait_backlog_empty
from bench.stack import procfile_command, stop_group, wait_ready
from bench.stats import median_of
from tests.servers import spare_cluster_port, spare_port
from workers.queue import ENTRY_READINGS, ReadingQueue

SHARDS = 4
MASTERS = 3
PER_REQUEST = 1000
CONNECTIONS = 16


class ShardedCluster(Scenario):
    number = 18
    sizes = {"s18_s": (60, 10)}
    table = (
        Figure("s18_drained_per_s", "18 end to end, 4 shards on a 3-master cluster: drained",
               "readings/s"),
        Figure("s18_accepted_per_s", "18   accepted meanwhile", "readings/s"),
        Figure("s18_redis_us_per_entry", "18   Redis CPU per queue entry (cluster, all nodes)", "µs"),
    )

    def prepare(self) -> None:
        log(f"scenario 18: end to end with QUEUE_SHARDS={SHARDS} on a {MASTERS}-master Redis "
            f"Cluster, 1,000-reading arrays (wrk -t2 -c{CONNECTIONS}) for "
            f"{self.size('s18_s'):g} s, x {self.bench.runs}")
        self.names: list[str] = []
        self.dir = tempfile.mkdtemp(prefix="bench-cluster-")
        self.ports = [spare_cluster_port() for _ in range(MASTERS)]
        persistence = redis.Redis.from_url(REDIS_URL).config_get("appendonly", "appendfsync")
        for port in self.ports:
            self._spawn(f"redis-cluster-{port}", (
                f"redis-server --port {port} --bind 127.0.0.1 --dir {self.dir} --save '' "
                f"--appendonly {persistence.get('appendonly', 'no')} "
                f"--appendfsync {persistence.get('appendfsync', 'everysec')} "
                f"--appendfilename appendonly-{port}.aof --appenddirname aof-{port} "
                f"--cluster-enabled yes --cluster-config-file nodes-{port}.conf"), {})
        self._create_cluster()
        url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self.queue = ReadingQueue.from_url(url, PREFIX, shards=SHARDS)
        self.port = spare_port()
        env = {"QUEUE_REDIS_URL": url, "QUEUE_SHARDS": str(SHARDS), "PORT": str(self.port)}
        web = self._spawn("web-sharded", procfile_command("web"), env)
        wait_ready(web, "web-sharded", lambda: self._ready(), "sharded web not ready")
        worker = self._spawn("worker-sharded", procfile_command("worker")
                             + f" --hostname bench-sharded-{os.getpid()}@%h",
                             {**env, "WORKER_METRICS_PORT": str(spare_port())})
        wait_ready(worker, "worker-sharded", lambda: draining_all(self.queue),
                   "the sharded worker did not start draining")
        self.conn = psycopg.connect(DATABASE_URL, autocommit=True)

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> subprocess.Popen:
        self.names.append(name)
        return self.bench.stack.spawn(name, command, env)

    def _create_cluster(self) -> None:
        deadline = time.monotonic() + 30
        while not all(_answers(port) for port in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster's redis-servers did not start; see bench/logs/")
            time.sleep(0.1)
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{port}" for port in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        while not all(_cluster_ok(port) for port in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not agree on its slots within 30 s")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def before_run(self) -> None:
        if wait_backlog_empty(self.queue, self.size("s3_drain_wait_s")) is None:
            raise RuntimeError("the sharded worker did not empty the backlog before the run")

    def run(self, i: int) -> dict:
        t0 = time.monotonic()
        rows0 = history_count(self.conn)
        end: dict = {}

        def at_end(_result: dict) -> None:
            end.update(backlog=self.queue.backlog(), t=time.monotonic(),
                       rows=history_count(self.conn))

        r = self.bench.ingest_wrk(f"s18r{i}", PER_REQUEST, self.size("s18_s"), 2, CONNECTIONS,
                                  after=at_end, stamped_from_s=60, url=f"http://127.0.0.1:{self.port}")
        rate = (end["rows"] - rows0) / (end["t"] - t0)
        waited = wait_backlog_empty(self.queue, self.size("s3_drain_wait_s"))
        cpu = combine_cluster(r["cpu_pct"])
        drained = rate * r["seconds"]
        run = {"drained_per_s": rate, "accepted_per_s": r["readings"] / r["seconds"],
               "refused_requests": r["status_errors"], "backlog_end": end["backlog"],
               "seconds_to_empty_after": None if waited is None else round(waited, 1),
               "cpu_pct": cpu, "cpu_us_per_reading": us_per(cpu, r["seconds"], drained),
               "redis_us_per_entry": us_per(cpu, r["seconds"], drained / ENTRY_READINGS).get(
                   "redis cluster", 0.0)}
        log(f"  run {i + 1}: drained {rate:,.0f} readings/s while accepting "
            f"{run['accepted_per_s']:,.0f}/s ({run['refused_requests']:,} refused with 503); "
            f"backlog at end {end['backlog']:,}; Redis CPU {run['redis_us_per_entry']} µs "
            f"per entry; CPU {cpu}")
        return run

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        return {"s18_drained_per_s": round(median_of(runs, "drained_per_s")),
                "s18_accepted_per_s": round(median_of(runs, "accepted_per_s")),
                "s18_redis_us_per_entry": round(median_of(runs, "redis_us_per_entry"), 1)}

    def cleanup(self) -> None:
        if hasattr(self, "conn"):
            self.conn.close()
        for name in reversed(self.names):
            stop_group(self.bench.stack.others.pop(name, None))
        subprocess.run(["rm", "-rf", self.dir], check=False)


def draining_all(queue: ReadingQueue) -> bool:
    """Whether a drain reads every shard (each has a consumer)."""
    try:
        return all(any(g.get("consumers") for g in queue.redis.xinfo_groups(s.stream))
                   for s in queue.shards)
    except redis.RedisError:
        return False


def combine_cluster(cpu: dict[str, float]) -> dict[str, float]:
    """The cluster's nodes as one component, `redis cluster`; the sharded web and
    worker under their own names."""
    out: dict[str, float] = {}
    for name, pct in cpu.items():
        key = "redis cluster" if name.startswith("redis-cluster-") else name
        out[key] = round(out.get(key, 0.0) + pct, 1)
    return out


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _cluster_ok(port: int) -> bool:
    return redis.Redis(port=port).cluster("info").get("cluster_state") == "ok"


SCENARIO = ShardedCluster
