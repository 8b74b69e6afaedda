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
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import redis

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


# A message an edge could not turn into readings (the MQTT bridge's bad
# messages) travels the queue as a row of this kind: the drain keeps it as a
# dead letter in the database, so the edge needs nothing but Redis, and a bad
# message is acknowledged, like a good one, only once it is queued.
DEAD_LETTER = "x"
# The edges that queue dead letters (the values of dead_letters.source besides "database").
DEAD_LETTER_SOURCES = ("mqtt",)


def dead_letter_row(source: str, reason: str, where: str, payload: str) -> list:
    """A queue row that the drain records as a dead letter of `source` (e.g. "mqtt"),
    with the reason, where it came from (an MQTT topic) and the payload (an excerpt)."""
    return [DEAD_LETTER, source, reason, where, payload]


def is_dead_letter_row(row: object) -> bool:
    return (isinstance(row, list) and len(row) == 5 and row[0] == DEAD_LETTER
            and all(isinstance(part, str) for part in row) and row[1] in DEAD_LETTER_SOURCES)


class QueueFull(Exception):
    """The backlog is at its limit: the client should retry later."""


@dataclass(frozen=True)
class Entry:
    id: str
    rows: list[list]


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


class ReadingQueue:
    """The queue under one key prefix, on one Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis = client
        self.stream = f"{prefix}:readings"
        self.backlog_key = f"{prefix}:backlog"
        self.drained_key = f"{prefix}:drained"
        self.rate_key = f"{prefix}:drain_rate"
        self._enqueue = client.register_script(ENQUEUE_LUA)
        self._ack = client.register_script(ACK_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str, single_connection: bool = False) -> ReadingQueue:
        """A queue on its own client. `single_connection` for a caller that never
        issues two commands at once: it skips the connection pool, which costs
        about 40 µs a command."""
        # Short timeouts: with Redis down, ingest must answer 503 at once, not hang.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30,
            single_connection_client=single_connection,
        )
        return cls(client, prefix)

    # -- the web's side -------------------------------------------------------

    def put(self, rows: list[list], max_backlog: int, max_seconds: float = 0.0,
            probe_s: float = RATE_PROBE_S) -> int:
        """Queue all rows or none; returns the backlog. Raises QueueFull, redis errors.

        Full means `max_backlog` readings queued, or, with `max_seconds`, more
        than the workers drain in that long (see ENQUEUE_LUA)."""
        backlog = self._enqueue(
            keys=[self.stream, self.backlog_key, self.drained_key, self.rate_key],
            args=[len(rows), max_backlog, max_seconds, DRAIN_TIME_FLOOR, probe_s,
                  *entry_payloads(rows)],
        )
        if backlog < 0:
            raise QueueFull()
        return backlog

    def backlog(self) -> int:
        """Readings queued and not yet acknowledged as stored."""
        return int(self.redis.get(self.backlog_key) or 0)

    def oldest_age_s(self) -> float:
        """Seconds since the oldest entry still in the queue was added (0 if none).

        A stream entry's id is its arrival time in milliseconds."""
        first = self.redis.xrange(self.stream, count=1)
        if not first:
            return 0.0
        added_ms = int(first[0][0].split(b"-")[0])
        now_s, now_us = self.redis.time()
        return max(0.0, now_s + now_us / 1e6 - added_ms / 1000)

    # -- the workers' side ----------------------------------------------------

    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim_stale(self, consumer: str, idle_s: float, count: int = 1000) -> int:
        """Take over entries that a presumably dead consumer has held too long."""
        claimed = self.redis.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=int(idle_s * 1000),
            start_id="0-0", count=count, justid=True,
        )
        return len(claimed)

    def take(
        self, consumer: str, max_readings: int, fill_wait_s: float, idle_wait_s: float = 0.0
    ) -> list[Entry]:
        """A batch of about max_readings readings at most.

        This consumer's own pending entries come first (a retry, or entries
        claimed from a dead consumer). Otherwise it waits up to idle_wait_s for
        new ones, then up to fill_wait_s more for the batch to fill.
        """
        pending = self._read(consumer, "0", max_readings, block_ms=None)
        if pending:
            return pending
        entries = self._read(consumer, ">", max_readings, block_ms=max(1, int(idle_wait_s * 1000)))
        deadline = time.monotonic() + fill_wait_s
        while entries and (room := max_readings - sum(len(e.rows) for e in entries)) > 0:
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                break
            got = self._read(consumer, ">", room, block_ms=wait_ms)
            if not got:
                break
            entries.extend(got)
        return entries

    def _read(self, consumer: str, start: str, room: int, block_ms: int | None) -> list[Entry]:
        count = max(1, math.ceil(room / ENTRY_READINGS))
        try:
            reply = self.redis.xreadgroup(
                GROUP, consumer, {self.stream: start}, count=count, block=block_ms
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # Redis lost its data (restart without persistence)
            return []
        if not reply:
            return []
        return [Entry(id_.decode(), entry_rows(fields)) for id_, fields in reply[0][1]]

    def ack(self, entries: list[Entry]) -> int:
        """Acknowledge stored entries; returns the readings that left the backlog."""
        args: list = [GROUP]
        for entry in entries:
            args += [entry.id, len(entry.rows)]
        return self._ack(keys=[self.stream, self.backlog_key, self.drained_key], args=args)
