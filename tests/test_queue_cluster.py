"""The queue sharded over a real 3-master Redis Cluster (QUEUE_SHARDS=6): each
request on one shard whole, admission over all shards, every worker draining
every shard, and nothing lost or doubled when workers die or several web and
worker processes share the load."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.request
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from models import partitions
from tests.conftest import INGEST, wait_for
from tests.readings import NOW
from tests.test_faults import (
    Feed,
    assert_stored_exactly_once,
    insert_waiting_on_lock,
    libpq,
    parse_ts,
    stored_keys,
)
from workers.queue import QueueFull, ReadingQueue

pytest_plugins = ["tests.servers"]

SHARDS = 6


@pytest.fixture
def settings(settings, redis_cluster):
    """This test's settings, with the queue on the cluster in SHARDS shards."""
    return dataclasses.replace(settings, queue_redis_url=redis_cluster.url, queue_shards=SHARDS)


def rows(n: int, device: str = "M-1") -> list[list]:
    return [["m", device, f"2026-11-30T00:{i // 60 % 60:02d}:{i % 60:02d}Z", 1.0, 230.0]
            for i in range(n)]


def stream_lengths(queue: ReadingQueue) -> list[int]:
    return [queue.redis.xlen(shard.stream) for shard in queue.shards]


def test_the_shards_spread_evenly_over_the_masters(queue, redis_cluster):
    assert type(queue.redis).__name__ == "RedisCluster"
    masters = Counter(queue.redis.get_node_from_key(shard.stream).port for shard in queue.shards)
    assert sorted(masters) == sorted(node.port for node in redis_cluster.nodes)
    assert set(masters.values()) == {SHARDS // len(redis_cluster.nodes)}
    for shard in queue.shards:  # a shard's keys share one slot: its scripts are single-slot
        slots = {queue.redis.keyslot(key) for key in dataclasses.astuple(shard)}
        assert len(slots) == 1


def test_a_request_goes_whole_to_one_shard(queue):
    queue.put(rows(1000), max_backlog=10_000)
    assert sorted(stream_lengths(queue)) == [0] * (SHARDS - 1) + [10]  # ten entries of 100
    assert queue.backlog() == 1000


def test_admission_counts_over_all_shards(queue):
    # Each shard's share is 100: a request that finds its shard full tries the others.
    for _ in range(SHARDS):
        queue.put(rows(100), max_backlog=100 * SHARDS)
    assert stream_lengths(queue) == [1] * SHARDS
    with pytest.raises(QueueFull):
        queue.put(rows(1), max_backlog=100 * SHARDS)
    assert queue.backlog() == 100 * SHARDS


def test_each_batch_starts_at_the_next_shard(queue):
    for _ in range(SHARDS):
        queue.put(rows(1000), max_backlog=10**6)
    queue.ensure_group()
    shards = []
    for _ in range(SHARDS):
        batch = queue.take("c1", 100, fill_wait_s=0)
        queue.ack(batch)
        shards += [entry.shard for entry in batch]
    assert sorted(shards) == list(range(SHARDS))  # one entry from each, none starved


def test_stale_entries_are_claimed_on_every_shard(queue):
    for _ in range(SHARDS):
        queue.put(rows(100), max_backlog=10**6)
    queue.ensure_group()
    held = queue.take("dead", 10_000, fill_wait_s=0)
    assert {e.shard for e in held} == set(range(SHARDS))
    assert queue.take("heir", 10_000, fill_wait_s=0) == []  # nothing new to read
    assert queue.claim_stale("heir", idle_s=0.001) == SHARDS
    claimed = queue.take("heir", 10_000, fill_wait_s=0)
    assert sorted(e.id for e in claimed) == sorted(e.id for e in held)
    assert queue.ack(claimed) == 100 * SHARDS
    assert queue.ack(held) == 0  # the late owner's acknowledgement counts nothing
    assert queue.backlog() == 0


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(client, queue, engine, settings,
                                                             worker_factory):
    feed = Feed(client)
    for _ in range(30):
        feed.post(50)
    # The days' partitions made first: the lock below must stop the insert, not the DDL.
    partitions.ensure_days(engine, {(NOW - timedelta(days=d)).date() for d in range(2)})
    with psycopg.connect(libpq(settings.database_url)) as blocker:
        # Hold history so that the worker's batch stops inside its transaction.
        blocker.execute("LOCK TABLE vehicle_readings IN EXCLUSIVE MODE")
        victim = worker_factory(concurrency=1)
        wait_for(lambda: insert_waiting_on_lock(engine), 30, "the worker to block mid-batch")
        victim.kill()
        blocker.rollback()
    for _ in range(10):
        feed.post(50)  # arrives while no worker runs
    worker_factory(concurrency=1)
    wait_for(lambda: queue.backlog() == 0, 60, "the heir to claim and drain every shard")
    assert_stored_exactly_once(engine, feed)
    assert sum(int(queue.redis.get(s.drained) or 0) for s in queue.shards) == feed.acked


def post_json(port: int, body: list[dict]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/ingest", data=json.dumps(body).encode(), method="POST",
        headers={**INGEST, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_two_web_and_three_worker_processes_keep_every_guarantee(gunicorn, queue, engine,
                                                                 worker_factory):
    """gunicorn runs two web processes (WEB_CONCURRENCY=2); three workers, each a
    Celery node with its own consumer names, drain meanwhile."""
    workers = [worker_factory(concurrency=1) for _ in range(3)]
    feeds = [Feed(None) for _ in range(4)]
    for i, feed in enumerate(feeds):
        feed.sent = i * 1_000_000  # distinct instants per thread
    errors: list[BaseException] = []

    def send(feed: Feed) -> None:
        try:
            for _ in range(40):
                batch = feed.readings(50)
                assert post_json(gunicorn.port, batch) == 202
                for r in batch:
                    key = (r.get("meterId") or r["vehicleId"], parse_ts(r["timestamp"]))
                    (feed.meters if "meterId" in r else feed.vehicles).add(key)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(feed,)) for feed in feeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    wait_for(lambda: queue.backlog() == 0, 60, "the workers to drain every shard")
    sent_meters = set().union(*(f.meters for f in feeds))
    sent_vehicles = set().union(*(f.vehicles for f in feeds))
    assert len(sent_meters) + len(sent_vehicles) == 4 * 40 * 50
    meters, vehicles = stored_keys(engine)
    assert len(meters) + len(vehicles) == 4 * 40 * 50
    assert set(meters) == sent_meters and set(vehicles) == sent_vehicles
    assert all(int(queue.redis.get(s.drained) or 0) > 0 for s in queue.shards)
    # Every worker reads every shard, each under its own consumer name.
    wait_for(lambda: all(len(queue.redis.xinfo_consumers(s.stream, "drain")) >= 3
                         for s in queue.shards), 30, "each worker to read every shard")
    for w in workers:
        assert w.proc.poll() is None, w.log()[-2000:]
