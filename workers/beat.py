"""The embedded beat's scheduler: RedBeat, made to outlive a Redis outage.

RedBeat lets a Redis error out of `tick` (its lock's `extend`, or reading the
schedule) and out of `close`; either ends the beat process, and the worker
never starts another one, so no drain was scheduled again until someone
restarted the worker. Here a Redis error skips the tick and is retried a
second later. A lock lost meanwhile (it expired while Redis was down, or was
never taken because Redis was down when the beat started) is taken again
without waiting, or, if another worker's beat has it by now, this one stands
by and keeps trying, as RedBeat's blocking acquire at start does.

The Procfile's worker runs it with `--scheduler workers.beat.Scheduler`.
"""

from __future__ import annotations

import logging

import redis
from kombu.exceptions import OperationalError
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)

# Seconds between attempts while Redis cannot be reached.
RETRY_S = 1.0
# What a broker that cannot be reached raises, at any depth of the exception's causes.
BROKER_DOWN = (redis.RedisError, OperationalError, OSError)


def _broker_down(exc: BaseException | None) -> BaseException | None:
    while exc is not None:
        if isinstance(exc, BROKER_DOWN):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class Scheduler(RedBeatScheduler):
    """RedBeat's scheduler; a Redis outage pauses it instead of ending it."""

    _outage = False
    _standing_by = False

    def tick(self, min=min, **kwargs) -> float:  # noqa: A002 (celery's signature)
        try:
            if self.lock_key and not self._hold_lock():
                return self.max_interval
            interval = super().tick(min=min, **kwargs)
        except LockError:
            # Lost between our check and RedBeat's extend: take it again next tick.
            log.warning("beat: lost the schedule lock; taking it again")
            return RETRY_S
        except redis.RedisError as exc:
            if not self._outage:
                log.warning("beat: Redis unavailable (%s); retrying every %.0f s",
                            type(exc).__name__, RETRY_S)
                self._outage = True
            return RETRY_S
        if self._outage:
            log.warning("beat: Redis is back; scheduling again")
            self._outage = False
        return interval

    def apply_entry(self, entry, producer=None) -> None:
        """Send a due task, as Celery's beat does; a broker that cannot be reached is
        one warning line, where Celery logs an ERROR with a traceback. The entry is
        due again at its next run (the drain's, a second later)."""
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            down = _broker_down(exc)
            if down is None:
                log.exception("beat: could not send %s", entry.task)
            else:
                log.warning("beat: could not send %s (%s: %s)", entry.task, type(down).__name__, down)

    def _hold_lock(self) -> bool:
        """Whether this beat holds the schedule lock, taking it if it is free."""
        if self.lock is None:
            self.lock = self._new_lock()
        if self.lock.owned():
            return True
        if self.lock.acquire(blocking=False):
            log.warning("beat: took the schedule lock")
            self._standing_by = False
            return True
        if not self._standing_by:
            log.info("beat: another worker's beat holds the schedule lock; standing by")
            self._standing_by = True
        return False

    def _new_lock(self) -> redis.lock.Lock:
        """The lock RedBeat takes at start (acquire_distributed_beat_lock), not yet taken."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        # RedBeat's extend sets the expiry rather than adding to it.
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def close(self) -> None:
        try:
            super().close()
        except redis.RedisError as exc:
            # The lock expires by itself within lock_timeout.
            log.warning("beat: could not release the schedule lock (%s)", type(exc).__name__)
            self.lock = None
