"""Every setting of the web and worker processes, read from the environment once.

The defaults are those of the external contract (../shared/CONTRACT.md). A bad
value stops the process at start-up with a message naming the variable, rather
than failing later on the first request that needs it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from limits import parse_many

log = logging.getLogger(__name__)

DEV_INGEST_TOKEN = "dev-ingest-token"
DEV_OPERATOR_TOKEN = "dev-operator-token"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
BAD_SETTING_EXIT_STATUS = 2

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    # Hourly rollups older than this many days are dropped (None: kept as long
    # as history); windows that reach further back are answered from daily ones.
    rollup_hourly_retention_days: int | None = None
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
    # A charging session ends where two of its readings lie further apart than this.
    session_gap_min: float = 15.0
    # Where the dashboard links to Flower; None: this host, port FLOWER_PORT.
    flower_url: str | None = None
    # DEVICE_AUTH=required: POST /v1/ingest takes device and gateway tokens only,
    # not the fleet-wide INGEST_TOKENS.
    device_auth_required: bool = False
    # After a token rotation the old token keeps working this many seconds.
    token_grace_s: int = 0
    # Per-token request limit in the `limits` notation ("100/second;5000/minute"); None: off.
    rate_limit: str | None = None
    # The web process: its port, gunicorn worker processes, connections each serves.
    port: int = 8000
    web_concurrency: int = (os.cpu_count() or 1) + 1
    web_connections: int = 1000
    # The edge (web/server/gunicorn_conf.py, web/server/client_limits.py): a request's headers
    # must be complete this long after its request line; a body that makes no
    # progress for this long is cut off.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    # Concurrent connections one client address may hold, across the web
    # processes of a host. A gateway behind a carrier's NAT shares its address
    # with many others (a mobile carrier may put thousands of SIMs behind a few
    # addresses): 256 lets about 3,000 gateways that post once a minute, each
    # connection kept alive 5 s, share one address, and still leaves a flood
    # from one address a quarter of one process's connections.
    max_connections_per_client: int = 256
    # Peers whose X-Forwarded-For names the client (a proxy or load balancer).
    trusted_proxies: tuple[Network, ...] = ()
    worker_metrics_port: int = 9808
    flower_port: int = 5555
    log_format: str = "json"
    log_level: str = "INFO"
    # -- The MQTT bridge (mqtt_bridge/) ------------------------------------------
    # The broker, with the bridge's own credentials: mqtt[s]://[user:password@]host:port.
    mqtt_url: str = "mqtt://localhost:1883"
    # The bridge's MQTT client id names its persistent session at the broker: it
    # must be unique per bridge process (a second one with the same id takes the
    # session over) and stable across restarts (a restarted bridge resumes its
    # session and gets what the broker held for it). Default: host name + index.
    mqtt_client_id: str = ""
    # How long the broker keeps a disconnected bridge's session and its messages.
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    # CA certificates for mqtts:// (default: the system's).
    mqtt_ca_file: str | None = None
    # The bridge's Prometheus metrics (0: off).
    mqtt_metrics_port: int = 9809

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


def _port(env: Mapping[str, str], name: str, default: int, zero: bool = False) -> int:
    """A TCP port (1 to 65535; 0 too with `zero`, meaning off)."""
    port = _int(env, name, default, 0 if zero else 1)
    if port > 65_535:
        raise SettingsError(f"{name} must be a TCP port (at most 65535), got {port}")
    return port


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...],
            upper: bool = False) -> str:
    raw = env.get(name, "").strip()
    value = (raw.upper() if upper else raw.lower()) or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks (a bare address is a block of one)."""
    networks = []
    for item in filter(None, (part.strip() for part in env.get(name, "").split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{name} must list IP addresses or CIDR blocks, got {item!r}") from None
    return tuple(networks)


def _tokens(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        raw = default
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise SettingsError(f"{name} must list at least one token")
    return tokens


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    retention = env.get("RETENTION_DAYS", "").strip()
    hourly_retention = env.get("ROLLUP_HOURLY_RETENTION_DAYS", "").strip()
    settings = Settings(
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
        rollup_hourly_retention_days=(
            _int(env, "ROLLUP_HOURLY_RETENTION_DAYS", 0) if hourly_retention else None),
        batch_max_readings=_int(env, "BATCH_MAX_READINGS", Settings.batch_max_readings),
        batch_max_wait_ms=_int(env, "BATCH_MAX_WAIT_MS", Settings.batch_max_wait_ms, 0),
        claim_idle_s=_float(env, "CLAIM_IDLE_S", Settings.claim_idle_s),
        drain_interval_s=_float(env, "DRAIN_INTERVAL_S", Settings.drain_interval_s),
        drain_task_s=_float(env, "DRAIN_TASK_S", Settings.drain_task_s),
        rate_limit=_rate_limit(env),
        device_auth_required=_device_auth(env),
        token_grace_s=_int(env, "TOKEN_GRACE_S", Settings.token_grace_s, 0),
        alert_threshold=_float(env, "ALERT_THRESHOLD", Settings.alert_threshold),
        alert_min_ac_kwh=_float(env, "ALERT_MIN_AC_KWH", Settings.alert_min_ac_kwh),
        alert_max_battery_temp_c=_float(env, "ALERT_MAX_BATTERY_TEMP", Settings.alert_max_battery_temp_c),
        alert_window_h=_float(env, "ALERT_WINDOW_HOURS", Settings.alert_window_h),
        alert_interval_s=_float(env, "ALERT_INTERVAL_S", Settings.alert_interval_s),
        session_gap_min=_float(env, "SESSION_GAP_MIN", Settings.session_gap_min),
        flower_url=env.get("FLOWER_URL", "").strip() or None,
        port=_port(env, "PORT", Settings.port),
        web_concurrency=_int(env, "WEB_CONCURRENCY", Settings.web_concurrency),
        web_connections=_int(env, "WEB_CONNECTIONS", Settings.web_connections),
        header_timeout_s=_float(env, "HEADER_TIMEOUT_S", Settings.header_timeout_s),
        body_timeout_s=_float(env, "BODY_TIMEOUT_S", Settings.body_timeout_s),
        max_connections_per_client=_int(env, "MAX_CONNECTIONS_PER_CLIENT",
                                        Settings.max_connections_per_client),
        trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
        worker_metrics_port=_port(env, "WORKER_METRICS_PORT", Settings.worker_metrics_port, zero=True),
        flower_port=_port(env, "FLOWER_PORT", Settings.flower_port),
        log_format=_choice(env, "LOG_FORMAT", Settings.log_format, LOG_FORMATS),
        log_level=_choice(env, "LOG_LEVEL", Settings.log_level, LOG_LEVELS, upper=True),
        **_mqtt(env),
    )
    # Only once every setting is good: a bad one is then the only line.
    for name in ("INGEST_TOKENS", "OPERATOR_TOKENS"):
        if name not in env:
            log.warning("%s is not set: using the development token", name)
    return settings


def load_or_exit(env: Mapping[str, str] | None = None) -> Settings:
    """`load`, for a process's entry point: a bad setting prints one line naming
    it and exits with status 2, not a traceback."""
    try:
        return load(env)
    except SettingsError as exc:
        print(f"bad setting: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(BAD_SETTING_EXIT_STATUS) from None


def _rate_limit(env: Mapping[str, str]) -> str | None:
    raw = env.get("RATE_LIMIT", "").strip()
    if not raw:
        return None
    try:
        parse_many(raw)
    except ValueError:
        raise SettingsError(f"RATE_LIMIT must read like '100/second;5000/minute', got {raw!r}") from None
    return raw


def _device_auth(env: Mapping[str, str]) -> bool:
    raw = env.get("DEVICE_AUTH", "").strip().lower() or "optional"
    if raw not in ("optional", "required"):
        raise SettingsError(f"DEVICE_AUTH must be 'optional' or 'required', got {raw!r}")
    return raw == "required"
# -- The MQTT bridge ---------------------------------------------------------------

MQTT_SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class MqttBroker:
    """MQTT_URL taken apart."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __str__(self) -> str:  # for logs: never the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_mqtt_url(url: str, name: str = "MQTT_URL") -> MqttBroker:
    """mqtt[s]://[user:password@]host[:port] as a MqttBroker, or SettingsError naming `name`."""
    parts = urlsplit(url)
    scheme = MQTT_SCHEMES.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme is None or not parts.hostname or port == -1 or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise SettingsError(f"{name} must read like mqtt://[user:password@]host:port "
                            f"(or mqtts:// for TLS), got {_hide_password(url)!r}")
    return MqttBroker(host=parts.hostname, port=port or scheme[1], tls=scheme[0],
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password is not None else None)


def _hide_password(url: str) -> str:
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def default_client_id(env: Mapping[str, str]) -> str:
    """energy-bridge-<host>-<MQTT_BRIDGE_INDEX, default 1>: stable across restarts on one
    host; give each bridge process on the same host its own index."""
    index = _int(env, "MQTT_BRIDGE_INDEX", 1)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "host"
    return f"energy-bridge-{host}-{index}"


def _mqtt(env: Mapping[str, str]) -> dict:
    url = env.get("MQTT_URL") or Settings.mqtt_url
    parse_mqtt_url(url)
    client_id = env.get("MQTT_CLIENT_ID", "").strip() or default_client_id(env)
    if not CLIENT_ID.fullmatch(client_id):
        raise SettingsError(f"MQTT_CLIENT_ID must be 1 to 128 characters of A-Z a-z 0-9 . _ : -, "
                            f"got {client_id!r}")
    ca_file = env.get("MQTT_CA_FILE", "").strip() or None
    if ca_file and not os.path.isfile(ca_file):
        raise SettingsError(f"MQTT_CA_FILE must name a readable file, got {ca_file!r}")
    return {
        "mqtt_url": url,
        "mqtt_client_id": client_id,
        # MQTT's session expiry is a 32-bit count of seconds.
        "mqtt_session_expiry_s": min(_int(env, "MQTT_SESSION_EXPIRY_S", Settings.mqtt_session_expiry_s),
                                     2**32 - 2),
        "mqtt_ca_file": ca_file,
        "mqtt_metrics_port": _int(env, "MQTT_METRICS_PORT", Settings.mqtt_metrics_port, 0),
    }
