"""Where the queue lives: its shards' keys, and the client for a Redis or a Redis Cluster.

A shard is one stream with its backlog, drained and rate keys. With hash tags,
all four keys of a shard share one hash slot (a Redis Cluster can then run the
enqueue and ack scripts, which touch all of them, on one master), and the
shards' slots are spread evenly over the slot space: `redis-cli --cluster
create` gives each master an equal run of slots, so N shards on M masters land
N/M to a master (resharding moves them like any other slot).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

# Short timeouts: with Redis down, ingest must answer 503 at once, not hang.
CLIENT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}


@dataclass(frozen=True)
class Shard:
    stream: str
    backlog: str
    drained: str
    rate: str


def shard_keys(prefix: str, shards: int, hash_tags: bool) -> list[Shard]:
    """The keys of each shard. Without hash tags (one shard on a plain Redis)
    they are the unsharded queue's own keys."""
    if not hash_tags:
        return [_shard(prefix)]
    return [_shard(f"{prefix}:{{{spread_tag(prefix, i, shards)}}}") for i in range(shards)]


def _shard(base: str) -> Shard:
    return Shard(f"{base}:readings", f"{base}:backlog", f"{base}:drained", f"{base}:drain_rate")


def spread_tag(prefix: str, index: int, shards: int) -> str:
    """A hash tag for shard `index` whose slot lies in the middle half of the
    index-th of `shards` equal runs of slots. The same in every process."""
    run = REDIS_CLUSTER_HASH_SLOTS / shards
    centre = (index + 0.5) * run
    for attempt in itertools.count():
        tag = f"{prefix}:q{index}" + (f".{attempt}" if attempt else "")
        if abs(key_slot(tag.encode()) - centre) <= run / 4:
            return tag
    raise AssertionError("unreachable")


def connect(url: str, single_connection: bool = False) -> redis.Redis | redis.RedisCluster:
    """A client for the Redis at `url`; a cluster client if that Redis is a
    node of a Redis Cluster (it says so in INFO). Raises redis errors while it
    does not answer: the caller connects again at its next use."""
    client = redis.Redis.from_url(url, health_check_interval=30,
                                  single_connection_client=single_connection, **CLIENT_OPTIONS)
    try:
        clustered = client.info("cluster").get("cluster_enabled") == 1
    except redis.RedisError:
        client.close()
        raise
    if not clustered:
        return client
    client.close()
    return redis.RedisCluster.from_url(url, **CLIENT_OPTIONS)
