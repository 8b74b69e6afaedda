"""Throwaway PostgreSQL, Redis and Mosquitto servers for tests that take a server down.

The machine's shared servers are never touched: each helper starts its own
server on a spare local port, in a temporary directory, and the fixtures stop
it and delete the directory afterwards, whatever the test did. PostgreSQL
refuses to run as root, so when the tests run as root its commands run as the
`postgres` OS user (via runuser) in a directory handed over to that user.

A test module gets the fixtures with `pytest_plugins = ["tests.servers"]` (and
must not import this module itself before that, or pytest cannot rewrite its asserts).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"


def spare_port() -> int:
    """A local TCP port nothing listens on right now (the one helper for tests and bench)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server on a spare port; stop and start it at will. Without persistence
    unless `appendonly` (then every write is fsynced to its AOF before the reply)."""

    def __init__(self, directory: Path, port: int | None = None, appendonly: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.port = port or spare_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / f"redis-{self.port}.log"
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10) -> RedisServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                 "--appendfsync", "always", "--dir", str(self.dir),
                 "--daemonize", "no", "--protected-mode", "no", *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(self._answers, timeout_s, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited at start:\n{self.log_path.read_text()}")
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, graceful: bool = False) -> None:
        """Kill the server as a crash would (its data is gone unless `appendonly`),
        or stop it as an operator would (SIGTERM: it writes its append-only file)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            self.proc.wait(30)
        wait_for(lambda: not port_open(self.port), 10, f"port {self.port} to close")


def spare_cluster_port() -> int:
    """A spare port whose cluster bus port (10000 above it) is spare too."""
    while True:
        port = spare_port()
        if port + 10000 < 65536 and not port_open(port + 10000):
            return port


class RedisClusterServers:
    """A Redis Cluster of `masters` masters and no replicas, each a redis-server
    on spare ports, made with `redis-cli --cluster create` (equal runs of slots)."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.dir = directory
        self.nodes = []
        for _ in range(masters):
            port = spare_cluster_port()
            self.nodes.append(RedisServer(directory, port, extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000")))

    @property
    def url(self) -> str:
        """Any node names the cluster: the first one."""
        return self.nodes[0].url

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        wait_for(self._ok, 30, "the cluster to agree on its slots")
        return self

    def _ok(self) -> bool:
        for node in self.nodes:
            client = redis.Redis(host="127.0.0.1", port=node.port)
            try:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
            finally:
                client.close()
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _as_postgres() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as a non-root user."""
    return ["runuser", "-u", PG_OS_USER, "--"] if os.geteuid() == 0 else []


class PostgresServer:
    """A PostgreSQL cluster of its own (trust auth, no fsync) on a spare local port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.log_path = directory / "postgres.log"
        self.port = port or spare_port()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*_as_postgres(), *args], cwd=self.dir, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}\n{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> PostgresServer:
        self._run(str(PG_BIN / "initdb"), "--pgdata", str(self.data), "--username", "postgres",
                  "--auth", "trust", "--encoding", "UTF8", "--no-locale", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nshared_buffers = 32MB\n"
            )
        return self

    def start(self) -> PostgresServer:
        self._run(str(PG_BIN / "pg_ctl"), "start", "--pgdata", str(self.data), "--log", str(self.log_path),
                  "--wait", "--timeout", "60")
        wait_for(self._answers, 30, f"PostgreSQL on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "stop", "--pgdata", str(self.data), "--mode", mode,
                  "--wait", "--timeout", "60")
        wait_for(lambda: not port_open(self.port), 10, f"port {self.port} to close")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def migrate(self, database_url: str) -> None:
        """Apply every migration, as the `release` process does."""
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url},
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"alembic upgrade head failed:\n{result.stdout}\n{result.stderr}")

    def cleanup(self) -> None:
        """Stop the server however it can be stopped; delete its directory."""
        try:
            if self.running():
                try:
                    self.stop(mode="immediate")
                except Exception:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


class PostgresReplica(PostgresServer):
    """A streaming replica of a PostgresServer: `pg_basebackup -R` of its data,
    started on a port of its own."""

    def clone(self, primary: PostgresServer) -> PostgresReplica:
        self._run(str(PG_BIN / "pg_basebackup"), "--host", "127.0.0.1", "--port", str(primary.port),
                  "--username", "postgres", "--pgdata", str(self.data), "--write-recovery-conf",
                  "--wal-method", "stream", "--checkpoint", "fast", "--no-sync", timeout_s=120)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n")
        return self

    def pause_replay(self) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


def _server_dir(prefix: str, owner: str | None = None) -> Path:
    # Not under pytest's tmp_path: that one is private to root, and PostgreSQL runs as another user.
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if owner and os.geteuid() == 0:
        entry = pwd.getpwnam(owner)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    return directory


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running throwaway redis-server; killed and deleted after the test."""
    yield from _redis_server(appendonly=False)


@pytest.fixture
def durable_redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server with an AOF: what it acknowledged survives a kill."""
    yield from _redis_server(appendonly=True)


def _redis_server(appendonly: bool) -> Iterator[RedisServer]:
    server = RedisServer(_server_dir("redis-fault-"), appendonly=appendonly)
    try:
        yield server.start()
    finally:
        try:
            if server.running():
                server.stop()
        finally:
            shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A running throwaway 3-master Redis Cluster, for a module's tests; deleted after."""
    cluster = RedisClusterServers(_server_dir("redis-cluster-"))
    try:
        yield cluster.start()
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(cluster.dir, ignore_errors=True)


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[PostgresServer, PostgresReplica]]:
    """A throwaway PostgreSQL primary and its streaming replica; both deleted after."""
    primary = PostgresServer(_server_dir("pg-primary-", owner=PG_OS_USER))
    replica = PostgresReplica(_server_dir("pg-replica-", owner=PG_OS_USER))
    try:
        primary.init().start()
        yield primary, replica.clone(primary).start()
    finally:
        try:
            replica.cleanup()
        finally:
            primary.cleanup()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL cluster; stopped and deleted after the test."""
    server = PostgresServer(_server_dir("pg-fault-", owner=PG_OS_USER))
    try:
        yield server.init().start()
    finally:
        server.cleanup()


class MosquittoServer:
    """A mosquitto broker on a spare local port, anonymous, without persistence.

    Its limits are raised as in deploy/mosquitto/mosquitto.conf: mosquitto's
    defaults (20 messages in flight, 1,000 queued per client) would drop QoS 1
    messages queued for a bridge that is down.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or spare_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "mosquitto.log"
        self.conf_path = directory / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10, config: str | None = None) -> MosquittoServer:
        """Start with an anonymous listener on the port, or with `config` (which names its listener)."""
        self.conf_path.write_text(
            (config or f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                       "max_inflight_messages 2000\nmax_queued_messages 1000000\n")
            + f"log_dest file {self.log_path}\nlog_type error\nlog_type warning\nlog_type notice\n"
            # As root it would switch to the `mosquitto` user, who cannot write here.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf_path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, timeout_s, f"mosquitto on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited at start:\n{self.log()}")
        return port_open(self.port)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    """A running throwaway mosquitto; killed and deleted after the test."""
    server = MosquittoServer(_server_dir("mosquitto-"))
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.dir, ignore_errors=True)
