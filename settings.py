"""Every setting of the web and worker processes, read from the environment once.

The defaults are those of the external contract (../shared/CONTRACT.md). A bad
value stops the process at start-up with a message naming the variable, rather
than failing later on the first request that needs it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from limits import parse_many

log = logging.getLogger(__name__)

DEV_INGEST_TOKEN = "dev-ingest-token"
DEV_OPERATOR_TOKEN = "dev-operator-token"


class SettingsError(ValueError):
    """A setting in the environment is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://localhost/energy"
    redis_url: str = "redis://localhost:6379/0"
    # The reading queue's Redis (None: REDIS_URL): a plain Redis or any node of
    # a Redis Cluster, over which QUEUE_SHARDS streams spread (workers/shards.py).
    queue_redis_url: str | None = None
    queue_shards: int = 1
    # Celery's broker (None: REDIS_URL): a plain Redis or RabbitMQ, never a
    # Redis Cluster, which kombu does not support.
    celery_broker_url: str | None = None
    # A streaming replica that the read endpoints use (None: the primary), and
    # the replay lag beyond which they leave it for the primary (models/replica.py).
    analytics_database_url: str | None = None
    max_replica_lag_s: float = 1.0
    # Every Redis key (queue, Celery broker, beat lock) starts with this, so that
    # several deployments or test sessions can share one Redis.
    redis_prefix: str = "energy"
    ingest_tokens: tuple[str, ...] = (DEV_INGEST_TOKEN,)
    operator_tokens: tuple[str, ...] = (DEV_OPERATOR_TOKEN,)
    max_batch: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    max_clock_skew_s: int = 300
    max_backlog: int = 2_000_000
    # Ingest also refuses readings while the backlog is more than the workers
    # drain in this many seconds (0: off), so that what it accepts is visible
    # within the contract's 5 s even when devices send faster than the workers
    # store: the rest wait at the client (503, Retry-After), not in the queue.
    max_backlog_s: float = 3.0
    retention_days: int | None = None
    # A drain transaction takes whichever comes first: this many readings, or
    # this long since its first reading arrived. The wait is most of the time
    # from ingest to queryable at moderate rates; under full load batches fill
    # long before it ends.
    batch_max_readings: int = 5_000
    batch_max_wait_ms: int = 100
    # Queue entries a consumer has held this long without acknowledging are
    # taken over by another worker: the holder is presumed dead.
    claim_idle_s: float = 30.0
    # Beat starts a drain task this often; one task drains for at most this long.
    drain_interval_s: float = 1.0
    drain_task_s: float = 10.0
    # Alerts: efficiency below the threshold over the window, judged only with
    # enough AC to mean something; or a battery hotter than the limit.
    alert_threshold: float = 0.85
    alert_min_ac_kwh: float = 5.0
    alert_max_battery_temp_c: float = 60.0
    alert_window_h: float = 24.0
    alert_interval_s: float = 60.0
    # Per-token request limit in the `limits` notation ("100/second;5000/minute"); None: off.
    rate_limit: str | None = None

    @property
    def queue_url(self) -> str:
        return self.queue_redis_url or self.redis_url

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, zero: bool = False) -> float:
    """A number above 0 (or at least 0, with `zero`) from the environment."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if zero and not (value >= 0 and math.isfinite(value)):
        raise SettingsError(f"{name} must be 0 or more, got {raw!r}")
    if not zero and not value > 0:
        raise SettingsError(f"{name} must be above 0, got {raw!r}")
    return value


def _tokens(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        log.warning("%s is not set: using the development token", name)
        raw = default
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise SettingsError(f"{name} must list at least one token")
    return tokens


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    retention = env.get("RETENTION_DAYS", "").strip()
    return Settings(
        database_url=env.get("DATABASE_URL") or Settings.database_url,
        redis_url=env.get("REDIS_URL") or Settings.redis_url,
        queue_redis_url=env.get("QUEUE_REDIS_URL") or None,
        queue_shards=_int(env, "QUEUE_SHARDS", Settings.queue_shards),
        celery_broker_url=env.get("CELERY_BROKER_URL") or None,
        analytics_database_url=env.get("ANALYTICS_DATABASE_URL") or None,
        max_replica_lag_s=_float(env, "MAX_REPLICA_LAG_S", Settings.max_replica_lag_s),
        redis_prefix=env.get("REDIS_PREFIX") or Settings.redis_prefix,
        ingest_tokens=_tokens(env, "INGEST_TOKENS", DEV_INGEST_TOKEN),
        operator_tokens=_tokens(env, "OPERATOR_TOKENS", DEV_OPERATOR_TOKEN),
        max_batch=_int(env, "MAX_BATCH", Settings.max_batch),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", Settings.max_body_bytes),
        max_clock_skew_s=_int(env, "MAX_CLOCK_SKEW", Settings.max_clock_skew_s, 0),
        max_backlog=_int(env, "MAX_BACKLOG", Settings.max_backlog),
        max_backlog_s=_float(env, "MAX_BACKLOG_SECONDS", Settings.max_backlog_s, zero=True),
        retention_days=_int(env, "RETENTION_DAYS", 0) if retention else None,
        batch_max_readings=_int(env, "BATCH_MAX_READINGS", Settings.batch_max_readings),
        batch_max_wait_ms=_int(env, "BATCH_MAX_WAIT_MS", Settings.batch_max_wait_ms, 0),
        claim_idle_s=_float(env, "CLAIM_IDLE_S", Settings.claim_idle_s),
        drain_interval_s=_float(env, "DRAIN_INTERVAL_S", Settings.drain_interval_s),
        drain_task_s=_float(env, "DRAIN_TASK_S", Settings.drain_task_s),
        rate_limit=_rate_limit(env),
        alert_threshold=_float(env, "ALERT_THRESHOLD", Settings.alert_threshold),
        alert_min_ac_kwh=_float(env, "ALERT_MIN_AC_KWH", Settings.alert_min_ac_kwh),
        alert_max_battery_temp_c=_float(env, "ALERT_MAX_BATTERY_TEMP", Settings.alert_max_battery_temp_c),
        alert_window_h=_float(env, "ALERT_WINDOW_HOURS", Settings.alert_window_h),
        alert_interval_s=_float(env, "ALERT_INTERVAL_S", Settings.alert_interval_s),
    )


def _rate_limit(env: Mapping[str, str]) -> str | None:
    raw = env.get("RATE_LIMIT", "").strip()
    if not raw:
        return None
    try:
        parse_many(raw)
    except ValueError:
        raise SettingsError(f"RATE_LIMIT must read like '100/second;5000/minute', got {raw!r}") from None
    return raw
