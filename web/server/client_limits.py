"""Who the client of a connection is, and how many connections each client holds.

Server machinery for the gevent worker of web/server/gunicorn_conf.py. Nothing here
imports the app, Flask or gevent: the gunicorn master loads the worker before
any process has monkey-patched.

Counts are kept across the web processes of a host, in memory the gunicorn
master maps before it forks: one row of counters per worker process, written
only by that process, so no lock is needed; a process admits a connection when
the sum over all rows is under the cap. Two processes admitting at the same
instant may overshoot the cap by one each, which does not matter. An address
is counted in a bucket chosen by its hash, so two addresses that share a bucket
share a count: with 65,536 buckets, rarely. A replacement worker takes the row
of the one that died and zeroes it, so a crash leaks nothing.
"""

from __future__ import annotations

import ipaddress
import mmap
import zlib
from collections.abc import Iterable

from settings import Network

BUCKETS = 65_536
COUNTER_BYTES = 2  # "H": a process serves fewer than 65,536 connections
ROW_BYTES = BUCKETS * COUNTER_BYTES  # web/server/gunicorn_conf.py maps rows of this size


class ConnectionCounts:
    """Concurrent connections per client address, summed over the rows of `memory`."""

    def __init__(self, memory: mmap.mmap, row: int, cap: int) -> None:
        if len(memory) % ROW_BYTES:
            raise ValueError(f"shared memory for connection counts must be rows of {ROW_BYTES} bytes")
        self.cells = memoryview(memory).cast("H")
        self.rows = len(self.cells) // BUCKETS
        self.base = row * BUCKETS
        self.cap = cap
        memory[row * ROW_BYTES:(row + 1) * ROW_BYTES] = bytes(ROW_BYTES)  # a dead predecessor's counts

    @staticmethod
    def bucket(address: str) -> int:
        return zlib.crc32(address.encode()) & (BUCKETS - 1)

    def enter(self, address: str) -> bool:
        """Count a connection of `address`; False (and not counted) when it is at the cap."""
        bucket = self.bucket(address)
        cells = self.cells
        if sum(cells[row * BUCKETS + bucket] for row in range(self.rows)) >= self.cap:
            return False
        cells[self.base + bucket] += 1
        return True

    def leave(self, address: str) -> None:
        self.cells[self.base + self.bucket(address)] -= 1


def is_trusted(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_of(peer: str, forwarded_for: str, proxies: tuple[Network, ...]) -> str:
    """The client a request from `peer` is for: the peer itself unless it is a
    trusted proxy; then the nearest address in X-Forwarded-For that is not one
    (proxies append the address they heard from, so only the right-hand end of
    the header is not the client's to forge)."""
    if not proxies or not is_trusted(peer, proxies):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # garbage beyond the last trusted hop: blame that hop
        client = hop
        if not is_trusted(hop, proxies):
            return hop
    return client
