"""Make sure PostgreSQL and Redis answer, starting local ones if needed.

Reads DATABASE_URL and REDIS_URL (through settings.py) from the environment, then from `.env` in the
repository root (which never overrides a variable already set). Creates the
database named in DATABASE_URL if it is missing. Prints one line per service
and exits 0 when both answer, 1 otherwise. Safe to run any number of times.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from getpass import getuser
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: settings.py is beside scripts/

from settings import load_or_exit  # noqa: E402

LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
WAIT_S = 30.0
# What libpq says when no server answers (as opposed to refusing our credentials).
NOT_ANSWERING = re.compile(r"refused|No such file|timeout|starting up", re.IGNORECASE)
CREATE_ROLE = 'sudo -u postgres createuser --superuser "$USER"'
REDIS_OPTIONS = "--daemonize yes --bind 127.0.0.1 -::1 --appendonly yes"


def fail(message: str) -> None:
    """Print an error (even with --quiet) and exit 1."""
    print(f"ensure_services: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def load_dotenv(path: Path) -> None:
    """Set the KEY=VALUE lines of `path` that are not already in the environment."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            os.environ.setdefault(key, value)


def wait_for(what: str, attempt):
    """Call `attempt` until it returns without raising, for up to WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            if time.monotonic() > deadline:
                fail(f"{what} did not answer within {WAIT_S:.0f} s: {exc}")
            time.sleep(0.5)


def start_postgres() -> str:
    """Start the local Debian cluster (newest version's `main`); return its name."""
    if not shutil.which("pg_lsclusters") or not Path("/etc/postgresql").is_dir():
        fail("PostgreSQL is not installed; install it: sudo apt-get install postgresql")
    versions = os.listdir("/etc/postgresql")
    if not versions:
        fail("no cluster in /etc/postgresql; create one: sudo pg_createcluster 15 main")
    version = max(versions, key=lambda v: [int(n) for n in re.findall(r"\d+", v)])
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode not in (0, 2):  # 2: the cluster was already running
        fail(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()}")
    return f"{version}/main"


def ensure_postgres(url: str) -> str:
    """Check the server of `url` answers (else start a local one); create its db."""
    # Accept SQLAlchemy's driver suffix too: postgresql+psycopg://...
    url = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)
    params = conninfo_to_dict(url)
    host = params.get("host") or os.environ.get("PGHOST", "")
    where = host or "the default unix socket"
    # As libpq: no dbname means PGDATABASE, else the user name.
    dbname = params.get("dbname") or os.environ.get("PGDATABASE")
    dbname = dbname or params.get("user") or os.environ.get("PGUSER") or getuser()
    maintenance = make_conninfo(url, dbname="postgres", connect_timeout="3")

    def connect() -> psycopg.Connection:
        return psycopg.connect(maintenance, autocommit=True)

    try:
        conn, action = connect(), "running"
    except psycopg.OperationalError as exc:
        error = str(exc).strip()
        local = host in LOCAL_HOSTS or host.startswith("/")
        if not (local and NOT_ANSWERING.search(error)):
            hint = f"\n  (if the role is missing: {CREATE_ROLE})" if local else ""
            fail(f"cannot use PostgreSQL at {where}: {error}{hint}")
        cluster = start_postgres()
        conn, action = wait_for("PostgreSQL", connect), f"started cluster {cluster}"
    with conn:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        exists = conn.execute(query, (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    state = "exists" if exists else "created"
    return f"postgresql: {action} at {where}; database {dbname!r} {state}"


def start_redis(port: int) -> Path:
    """Start a local redis-server keeping its data in <repo>/.redis; return its log."""
    if not shutil.which("redis-server"):
        fail("Redis is not installed; install it: sudo apt-get install redis-server")
    data = REPO / ".redis"
    data.mkdir(exist_ok=True)
    log = data / "redis.log"
    cmd = ["redis-server", *REDIS_OPTIONS.split(), "--appendfsync", "everysec"]
    cmd += ["--port", str(port), "--dir", str(data), "--logfile", str(log)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"redis-server failed to start: {(done.stderr or done.stdout).strip()}")
    return log


def ensure_redis(url: str) -> str:
    """Check Redis at `url` answers PING, starting a local one if it does not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 6379
    where = f"{host or 'localhost'}:{port}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
        action = "running"
    except redis.AuthenticationError as exc:
        fail(f"Redis at {where} refused our credentials: {exc}")
    except redis.RedisError as exc:
        if parts.scheme not in ("redis", "rediss") or host not in LOCAL_HOSTS:
            fail(f"Redis at {where} does not answer and is not local TCP: {exc}")
        log = start_redis(port)
        wait_for(f"Redis (log: {log})", client.ping)
        action = f"started redis-server (data and log in {log.parent})"
    finally:
        client.close()
    return f"redis: {action} at {where}"


def main() -> None:
    """Parse the options, then ensure both services."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    parser.add_argument("--no-env-file", action="store_true", help="ignore .env (as `make test` does)")
    args = parser.parse_args()
    if not args.no_env_file:
        load_dotenv(REPO / ".env")
    logging.getLogger("settings").setLevel(logging.ERROR)  # the dev-token warning is web's to give
    settings = load_or_exit()  # a bad value in .env stops `make run` here, with one line
    for ensure, url in ((ensure_postgres, settings.database_url), (ensure_redis, settings.redis_url)):
        status = ensure(url)
        if not args.quiet:
            print(status, flush=True)


if __name__ == "__main__":
    main()
