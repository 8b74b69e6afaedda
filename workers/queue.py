"""The Redis queue of validated readings: how the web puts them on and workers take them off.

The queue is a Redis stream read through a consumer group. A request's
readings are appended as entries of at most ENTRY_READINGS readings each, in one
atomic script that also checks and raises the backlog counter, so a request is
queued whole or not at all. A worker reads entries into its pending list,
stores them, and acknowledges (and deletes) them only after its transaction
commits; entries left pending by a worker that died are claimed by another one
once they have sat idle for `claim_idle_s`. Storing is idempotent, so an entry
stored twice (its worker died between commit and acknowledgement) costs nothing.

Acknowledgements also count the readings drained, from which the enqueue script
measures the workers' rate: ingest can then refuse a backlog that would take them
too long to store (MAX_BACKLOG_SECONDS), not only one too large (MAX_BACKLOG).

Past one Redis, the queue is QUEUE_SHARDS such streams (workers/shards.py), each
with its own backlog, drained and rate keys in one hash slot, so that a Redis
Cluster spreads the shards over its masters while every script stays
single-slot. A request goes whole to one shard (the enqueue script, as above);
every worker reads every shard, starting at the next one each batch.

Admission counts over all shards without reading them all per request: each
shard's script refuses once its own share of the limits is used (its backlog
at MAX_BACKLOG / shards, or more than its own drain rate stores in
MAX_BACKLOG_SECONDS), and a request a shard refuses tries the next shards
before the client is told 503. So a request is refused only when every shard is
at its share, that is when the whole queue is at the limit; the common case
stays one script call, and only refusals cost one call per shard.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from workers.shards import Shard, connect, shard_keys

if TYPE_CHECKING:
    from settings import Settings

GROUP = "drain"
# Bounds a batch's overshoot: a read asks for just enough entries to fill it.
ENTRY_READINGS = 100
# A backlog this small is never refused for its drain time: a few batches'
# worth, which any running worker takes in a second or two.
DRAIN_TIME_FLOOR = 50_000
# How often the workers' rate is measured (seconds): long enough to span many
# batches, short enough to follow a change of load within a second.
RATE_PROBE_S = 1.0

# KEYS: stream, backlog counter, drained counter, drain-rate probe. ARGV: readings,
# backlog limit, seconds limit (0: none), floor, probe interval, then one payload
# per entry. Returns the new backlog, or -1 when the queue is full.
#
# The probe keeps the drained counter's value and time of its last reading; at
# least `probe interval` later the next call turns the difference into the
# workers' rate. A backlog the workers would take over `seconds limit` to drain
# at that rate is full, except below the floor (at low load the rate is the
# load, not what the workers could do) or when nothing drains at all (workers
# down or restarting: then the queue buffers, up to the backlog limit).
ENQUEUE_LUA = """
local queued = tonumber(redis.call('GET', KEYS[2]) or '0')
if queued >= tonumber(ARGV[2]) then return -1 end
local seconds = tonumber(ARGV[3])
if seconds > 0 then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local drained = tonumber(redis.call('GET', KEYS[3]) or '0')
  local probe = redis.call('HMGET', KEYS[4], 'at', 'drained', 'rate')
  local rate = tonumber(probe[3] or '0')
  if not probe[1] or now - tonumber(probe[1]) >= tonumber(ARGV[5]) then
    if probe[1] then rate = (drained - tonumber(probe[2])) / (now - tonumber(probe[1])) end
    redis.call('HSET', KEYS[4], 'at', tostring(now), 'drained', drained, 'rate', tostring(rate))
  end
  if rate > 0 and queued >= tonumber(ARGV[4]) and queued >= rate * seconds then return -1 end
end
for i = 6, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[i])
end
return redis.call('INCRBY', KEYS[2], ARGV[1])
"""

# KEYS: stream, backlog counter, drained counter. ARGV: group, then (entry id,
# readings) pairs.
# Only entries this call really acknowledges lower the backlog, so an entry
# acknowledged twice (by its dead owner's successor, then by a late owner) counts once.
ACK_LUA = """
local done = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    done = done + tonumber(ARGV[i + 1])
  end
end
if done > 0 then
  redis.call('DECRBY', KEYS[2], done)
  redis.call('INCRBY', KEYS[3], done)
end
return done
"""


class QueueFull(Exception):
    """The backlog is at its limit: the client should retry later."""


@dataclass(frozen=True)
class Entry:
    id: str
    rows: list[list]
    shard: int = 0  # which stream it was read from: where it is acknowledged


def entry_payloads(rows: list[list]) -> list[str]:
    """Split a request's rows into entry payloads of at most ENTRY_READINGS rows."""
    return [
        json.dumps(rows[i : i + ENTRY_READINGS], separators=(",", ":"))
        for i in range(0, len(rows), ENTRY_READINGS)
    ]


def entry_rows(fields: dict[bytes, bytes]) -> list:
    """The rows of an entry. One deleted while still pending comes back without
    fields: no rows, but it must still be acknowledged to leave the pending list.
    One that is not ours (not a JSON array) becomes a single row that the drain
    will refuse and dead-letter, rather than an error that blocks the queue."""
    if not fields:
        return []
    raw = fields.get(b"r", b"")
    try:
        rows = json.loads(raw)
    except ValueError:
        rows = None
    return rows if isinstance(rows, list) else [["malformed", raw.decode(errors="replace")]]


# While nothing is queued, a worker polls every shard this often, blocking on
# one of them in between: with one shard it blocks for the whole wait.
SHARD_POLL_S = 0.02


class ReadingQueue:
    """The queue under one key prefix: one stream, or `shards` of them, on one
    Redis or a Redis Cluster.

    It connects at first use: whether the Redis at the URL is a cluster (and so
    which keys the queue has) is known only once it answers, and a process must
    start, and answer 503, while Redis is down."""

    def __init__(self, connect: Callable[[], redis.Redis | redis.RedisCluster], prefix: str,
                 shards: int = 1) -> None:
        self._connect = connect
        self._prefix = prefix
        self._shard_count = shards
        self._client: redis.Redis | redis.RedisCluster | None = None
        self._shards: list[Shard] = []
        # Each process starts its rounds at its own shard, so that web
        # processes spread requests and workers spread reads from the first one.
        self._next_put = itertools.count(random.randrange(shards))
        self._next_take = itertools.count(random.randrange(shards))

    @classmethod
    def from_url(cls, url: str, prefix: str, single_connection: bool = False,
                 shards: int = 1) -> ReadingQueue:
        """A queue on its own client: a Redis Cluster's if `url` names a node of
        one. `single_connection` for a caller that never issues two commands at
        once: it skips the connection pool, which costs about 40 µs a command.

        With one shard on a plain Redis the keys are those of the unsharded
        queue, so a deployment that changes nothing keeps its queue."""
        return cls(lambda: connect(url, single_connection), prefix, shards)

    @classmethod
    def from_settings(cls, settings: Settings, single_connection: bool = False) -> ReadingQueue:
        """The queue the settings name (QUEUE_REDIS_URL, QUEUE_SHARDS, REDIS_PREFIX)."""
        return cls.from_url(settings.queue_url, settings.redis_prefix, single_connection,
                            settings.queue_shards)

    @property
    def redis(self) -> redis.Redis | redis.RedisCluster:
        """The client, connected at first use (raises redis errors while Redis is down)."""
        return self._connected()

    def _connected(self) -> redis.Redis | redis.RedisCluster:
        if self._client is None:
            client = self._connect()
            cluster = isinstance(client, redis.RedisCluster)
            self._shards = shard_keys(self._prefix, self._shard_count,
                                      hash_tags=cluster or self._shard_count > 1)
            self._enqueue = client.register_script(ENQUEUE_LUA)
            self._ack = client.register_script(ACK_LUA)
            self._client = client
        return self._client

    @property
    def shards(self) -> list[Shard]:
        self._connected()  # the keys are known once connected
        return self._shards

    @property
    def stream(self) -> str:
        """The first shard's stream (the only one with QUEUE_SHARDS=1)."""
        return self.shards[0].stream

    @property
    def backlog_key(self) -> str:
        return self.shards[0].backlog

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- the web's side -------------------------------------------------------

    def put(self, rows: list[list], max_backlog: int, max_seconds: float = 0.0,
            probe_s: float = RATE_PROBE_S) -> int:
        """Queue all rows or none, on one shard; returns that shard's backlog.
        Raises QueueFull, redis errors.

        Full means `max_backlog` readings queued, or, with `max_seconds`, more
        than the workers drain in that long (see ENQUEUE_LUA), counted as each
        shard's share of both (see the module's docstring)."""
        payloads = entry_payloads(rows)
        shards = self.shards
        count = len(shards)
        share = -(-max_backlog // count)  # each shard's share, rounded up
        first = next(self._next_put)
        for i in range(count):
            shard = shards[(first + i) % count]
            backlog = self._enqueue(
                keys=[shard.stream, shard.backlog, shard.drained, shard.rate],
                args=[len(rows), share, max_seconds, DRAIN_TIME_FLOOR // count, probe_s, *payloads],
            )
            if backlog >= 0:
                return backlog
        raise QueueFull()

    def backlog(self) -> int:
        """Readings queued and not yet acknowledged as stored, over all shards."""
        return sum(int(self.redis.get(shard.backlog) or 0) for shard in self.shards)

    def oldest_age_s(self) -> float:
        """Seconds since the oldest entry still in the queue was added (0 if none).

        A stream entry's id is its arrival time in milliseconds."""
        firsts = [self.redis.xrange(shard.stream, count=1) for shard in self.shards]
        added = [int(first[0][0].split(b"-")[0]) for first in firsts if first]
        if not added:
            return 0.0
        now_s, now_us = self.redis.time()
        return max(0.0, now_s + now_us / 1e6 - min(added) / 1000)

    # -- the workers' side ----------------------------------------------------

    def ensure_group(self) -> None:
        """Create each shard's consumer group (from the stream's start) unless it exists."""
        for shard in self.shards:
            self._ensure_group(shard)

    def _ensure_group(self, shard: Shard) -> None:
        try:
            self.redis.xgroup_create(shard.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim_stale(self, consumer: str, idle_s: float, count: int = 1000) -> int:
        """Take over entries that a presumably dead consumer has held too long, on every shard."""
        claimed = 0
        for shard in self.shards:
            claimed += len(self.redis.xautoclaim(
                shard.stream, GROUP, consumer, min_idle_time=int(idle_s * 1000),
                start_id="0-0", count=count, justid=True,
            ))
        return claimed

    def take(
        self, consumer: str, max_readings: int, fill_wait_s: float, idle_wait_s: float = 0.0
    ) -> list[Entry]:
        """A batch of about max_readings readings at most.

        This consumer's own pending entries come first (a retry, or entries
        claimed from a dead consumer). Otherwise it waits up to idle_wait_s for
        new ones, then up to fill_wait_s more for the batch to fill. Each call
        starts at the next shard, so every shard gets its turn under any load.
        """
        first = next(self._next_take)
        order = [(first + i) % len(self.shards) for i in range(len(self.shards))]
        pending = self._gather(consumer, order, "0", max_readings, None)
        if pending:
            return pending
        entries = self._gather(consumer, order, ">", max_readings,
                               time.monotonic() + max(0.001, idle_wait_s))
        deadline = time.monotonic() + fill_wait_s
        while entries and (room := max_readings - sum(len(e.rows) for e in entries)) > 0:
            if deadline - time.monotonic() <= 0:
                break
            got = self._gather(consumer, order, ">", room, deadline)
            if not got:
                break
            entries.extend(got)
        return entries

    def _gather(self, consumer: str, order: list[int], start: str, room: int,
                deadline: float | None) -> list[Entry]:
        """Entries from the shards in `order` until `room` readings are taken.
        With a deadline and nothing found, wait for entries until it passes."""
        if len(order) == 1 and deadline is not None:
            # One shard: block on it for the whole wait, as an unsharded queue does.
            left_s = deadline - time.monotonic()
            return self._read(order[0], consumer, start, room, block_ms=max(1, int(left_s * 1000)))
        rounds = 0
        while True:
            entries: list[Entry] = []
            for index in order:
                if room <= 0:
                    break
                got = self._read(index, consumer, start, room, block_ms=None)
                entries += got
                room -= sum(len(e.rows) for e in got)
            left_s = 0.0 if deadline is None else deadline - time.monotonic()
            if entries or left_s <= 0:
                return entries
            # Block on one shard (the next one each round) for a slice of the wait.
            wait_s = min(left_s, SHARD_POLL_S)
            entries = self._read(order[rounds % len(order)], consumer, start, room,
                                 block_ms=max(1, int(wait_s * 1000)))
            if entries:
                return entries
            rounds += 1

    def _read(self, index: int, consumer: str, start: str, room: int,
              block_ms: int | None) -> list[Entry]:
        shard = self.shards[index]
        count = max(1, math.ceil(room / ENTRY_READINGS))
        try:
            reply = self.redis.xreadgroup(
                GROUP, consumer, {shard.stream: start}, count=count, block=block_ms
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group(shard)  # Redis lost its data (restart without persistence)
            return []
        if not reply:
            return []
        # RESP2 answers a list of [stream, entries]; RESP3 a dict by stream.
        streams = reply.values() if isinstance(reply, dict) else [e for _, e in reply]
        return [Entry(id_.decode(), entry_rows(fields), index)
                for entries in streams for id_, fields in entries]

    def ack(self, entries: list[Entry]) -> int:
        """Acknowledge stored entries, shard by shard; returns the readings that left the backlog."""
        done = 0
        for index in sorted({entry.shard for entry in entries}):
            shard = self.shards[index]
            args: list = [GROUP]
            for entry in entries:
                if entry.shard == index:
                    args += [entry.id, len(entry.rows)]
            done += self._ack(keys=[shard.stream, shard.backlog, shard.drained], args=args)
        return done
