"""Each process's cache of device and gateway credentials, kept fresh through Redis.

A request's token is looked up by its hash in a dict: no database query, no
Redis call, O(1), and then O(readings) to check each reading's device. The
cache is a whole snapshot of the registry, rebuilt when it changes:

- Every change bumps `credential_version` in the database, in the change's own
  transaction, then publishes on a Redis channel. A refresher thread (a greenlet
  under gevent) wakes on the message at once, or every POLL_S without one, and
  reloads when the database's version differs from the snapshot's. So a missed
  message, or Redis being down when the change was made, delays a change by at
  most POLL_S: well within the 2 s every process must honour it by.
- Redis down: the refresher polls the version only. Database down: nothing can
  change (changes are written there), so the snapshot stays right; the
  refresher keeps trying. A process that never loaded a snapshot answers
  device tokens with CredentialsUnavailable (503) rather than guessing.

The refresher starts lazily in each process, so a forked worker runs its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field

import redis
from sqlalchemy import Engine

from credentials.tokens import token_hash
from models.db import read_connection
from models.devices import credential_version, load_credentials

log = logging.getLogger(__name__)

POLL_S = 0.5
LOAD_WAIT_S = 2.0
REDIS_TIMEOUT_S = 1.0
# A queue row starts with its kind's letter (workers/queue.py row format).
ROW_KIND = {"meter": "m", "vehicle": "v"}
KIND_OF_ROW = {letter: kind for kind, letter in ROW_KIND.items()}


class CredentialsUnavailable(Exception):
    """No snapshot of the registry could be loaded yet (the database does not answer)."""


@dataclass(slots=True)
class Credential:
    """What one token may write: device id -> (row kind letter, device disabled).

    Never changed once built (a new snapshot replaces it); not frozen because a
    frozen dataclass is several times slower to build, 10,000 at a time."""

    name: str
    devices: Mapping[str, tuple[str, bool]]
    disabled: bool = False
    # An old token in its grace period after a rotation works until then (epoch s).
    valid_until: float | None = None

    def refusals(self, rows: list[list]) -> dict[int, str]:
        """Why each queue row this token may not write is refused, by index (empty: none)."""
        if self.disabled:
            return {i: f"The {self.name} is disabled." for i in range(len(rows))}
        devices = self.devices
        refused = {}
        for i, row in enumerate(rows):
            entry = devices.get(row[1])
            if entry is None or entry[0] != row[0]:
                refused[i] = f"This token may not write readings of {KIND_OF_ROW[row[0]]} {row[1]}."
            elif entry[1]:
                refused[i] = f"The device {row[1]} is disabled."
        return refused

    def may_write(self, kind: str, device_id: str) -> bool:
        """Whether this token may write readings of the device (kind 'meter' or 'vehicle')."""
        entry = self.devices.get(device_id)
        return not self.disabled and entry == (ROW_KIND[kind], False)


@dataclass
class CredentialCache:
    """The registry as of `version`, by token hash; see the module docstring."""

    engine: Engine
    redis_url: str
    redis_prefix: str
    poll_s: float = POLL_S
    by_hash: dict[bytes, Credential] = field(default_factory=dict)
    version: int | None = None
    failing: bool = False
    _pid: int | None = None
    _loaded: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def channel(self) -> str:
        return channel(self.redis_prefix)

    def lookup(self, token: str) -> Credential | None:
        """The credential the token opens, or None; CredentialsUnavailable without a snapshot."""
        if self._pid != os.getpid():
            self._start()
        if not self._loaded.is_set() and (self.failing or not self._loaded.wait(LOAD_WAIT_S)):
            raise CredentialsUnavailable
        credential = self.by_hash.get(token_hash(token))
        if credential is None or (credential.valid_until is not None
                                  and time.time() >= credential.valid_until):
            return None
        return credential

    def may_write(self, token: str, kind: str, device_id: str) -> bool:
        """Whether the token may write readings of this device (for edges other than HTTP)."""
        credential = self.lookup(token)
        return credential is not None and credential.may_write(kind, device_id)

    def close(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        # A forked child has the parent's snapshot but not its thread: start afresh.
        self._pid = os.getpid()
        self._loaded, self._stop = threading.Event(), threading.Event()
        self.by_hash, self.version, self.failing = {}, None, False
        threading.Thread(target=self._run, name="credential-refresher", daemon=True).start()

    def _run(self) -> None:
        # Short timeouts: a Redis that stops answering (a partition, not a refusal)
        # must not hold up the database polls that stand in for its messages.
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                      socket_timeout=REDIS_TIMEOUT_S)
        pubsub = None
        while not self._stop.is_set():
            try:
                self.refresh()
                self.failing = False
            except Exception as exc:
                if not self.failing:  # once per outage, not every POLL_S; one line, no traceback
                    log.warning("cannot refresh device credentials (%s: %s); keeping the last snapshot",
                                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                self.failing = True
            pubsub = self._wait_for_news(client, pubsub)
        client.close()

    def refresh(self) -> None:
        """Reload the snapshot if the database's version differs from ours."""
        if self.version is not None:
            with read_connection(self.engine) as conn:
                if credential_version(conn) == self.version:
                    return
        version, devices, gateways = load_credentials(self.engine)
        self.by_hash = build_snapshot(devices, gateways, time.time())
        self.version = version
        self._loaded.set()

    def _wait_for_news(self, client: redis.Redis, pubsub):
        """Block until a change is announced or POLL_S passes; the pubsub to use next time."""
        try:
            if pubsub is None:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
            pubsub.get_message(timeout=self.poll_s)
            while pubsub.get_message(timeout=0) is not None:  # one reload for a burst
                pass
            return pubsub
        except Exception:  # Redis down or odd: never let the refresher die; the polls go on
            if pubsub is not None:
                with suppress(Exception):
                    pubsub.close()
            self._stop.wait(self.poll_s)
            return None


def build_snapshot(devices: list, gateways: list, now: float) -> dict[bytes, Credential]:
    """Every valid token hash -> its credential, from models.devices.load_credentials rows."""
    snapshot: dict[bytes, Credential] = {}
    entries: dict[str, tuple[str, bool]] = {}
    for device_id, kind, disabled, current, previous, previous_until in devices:
        entry = entries[device_id] = (ROW_KIND[kind], disabled)
        credential = Credential(f"device {device_id}", {device_id: entry}, disabled)
        _add(snapshot, credential, current, previous, previous_until, now)
    for gateway_id, disabled, current, previous, previous_until, attached in gateways:
        credential = Credential(f"gateway {gateway_id}",
                                {d: entries[d] for d in attached if d in entries}, disabled)
        _add(snapshot, credential, current, previous, previous_until, now)
    return snapshot


def _add(snapshot: dict, credential: Credential, current: bytes, previous: bytes | None,
         previous_until, now: float) -> None:
    snapshot[bytes(current)] = credential
    if previous is not None and previous_until is not None and previous_until.timestamp() > now:
        snapshot[bytes(previous)] = Credential(credential.name, credential.devices,
                                               credential.disabled, previous_until.timestamp())


def channel(redis_prefix: str) -> str:
    """The Redis channel on which changes to the registry are announced."""
    return f"{redis_prefix}:credentials:changed"


def announce_change(client: redis.Redis, redis_prefix: str) -> None:
    """Tell every process's cache to reload now; if Redis is down, their polling will."""
    try:
        client.publish(channel(redis_prefix), "1")
    except redis.RedisError:
        log.warning("could not announce a credentials change; caches will poll for it")
