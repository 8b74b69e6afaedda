"""The stack under test: the Procfile's `web` and `worker` commands as subprocesses.

Each runs in a process group of its own on the bench database and Redis prefix
(bench tokens, `MAX_BACKLOG=100000000`, a spare port), so that stopping it stops
all its children and the CPU meter can tell its processes from the rest.
A scenario that needs another process (a bridge, say) starts it with spawn():
stop() stops it with the others.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.config import (
    DATABASE_URL,
    INGEST_TOKEN,
    LOGS,
    OPERATOR_TOKEN,
    PREFIX,
    REDIS_URL,
    ROOT,
    VENV_BIN,
    log,
)
from bench.services import draining
from tests.servers import spare_port
from workers.queue import ReadingQueue

READY_WAIT_S = 60
KEPT_IDLE_S = 2  # timed_get() reconnects after this long idle (gunicorn's keepalive: 5 s)


class Stack:
    """gunicorn, the Celery worker and any other process a scenario starts."""

    def __init__(self, web_concurrency: int | None, worker_concurrency: int | None) -> None:
        self.port = spare_port()
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("WEB_CONCURRENCY", "RATE_LIMIT", "RETENTION_DAYS")}
        self.env.update({
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": PREFIX,
            "INGEST_TOKENS": INGEST_TOKEN,
            "OPERATOR_TOKENS": OPERATOR_TOKEN,
            "MAX_BACKLOG": "100000000",
            "PORT": str(self.port),
        })
        if web_concurrency:
            self.env["WEB_CONCURRENCY"] = str(web_concurrency)
        self.worker_concurrency = worker_concurrency
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.others: dict[str, subprocess.Popen] = {}
        self._kept: http.client.HTTPConnection | None = None  # timed_get()'s
        self._kept_used = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start another process a scenario needs (`command`: a shell command line),
        with the stack's environment plus `env`; stop() stops it with the rest."""
        self.others[name] = proc = self._start(name, command, env or {})
        return proc

    def _start(self, name: str, command: str, env: dict[str, str]) -> subprocess.Popen:
        """`command` in a process group of its own, its output in bench/logs/NAME.log."""
        LOGS.mkdir(exist_ok=True)
        with open(LOGS / f"{name}.log", "ab") as out:
            # Each command makes its own (empty) metrics directory, as in production.
            return subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=ROOT, env={**self.env, **env},
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def process_groups(self) -> dict[int, str]:
        """The name of each process group of the stack, by its id."""
        named = {"web": self.web, "worker": self.worker, **self.others}
        return {proc.pid: name for name, proc in named.items() if proc is not None}

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET a path of the web process: its status and body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def timed_get(self, path: str, token: str, timeout_s: float = 30) -> tuple[float, bytes]:
        """Milliseconds a GET of the web process took, over a connection kept alive
        between calls (as a dashboard's browser sends them), and its body; raises
        RuntimeError unless it answered 200."""
        # gunicorn closes a connection idle for its keepalive (5 s): open a new one
        # after a pause (a quiet-machine wait, say), before the clock starts.
        if self._kept is not None and time.monotonic() - self._kept_used > KEPT_IDLE_S:
            self._kept.close()
            self._kept = None
        if self._kept is None:
            self._kept = http.client.HTTPConnection("127.0.0.1", self.port)
            self._kept.connect()
        self._kept.timeout = timeout_s
        self._kept.sock.settimeout(timeout_s)
        started = time.perf_counter()
        try:
            self._kept.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = self._kept.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self._kept.close()
            self._kept = None
            raise
        took = (time.perf_counter() - started) * 1000
        self._kept_used = time.monotonic()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return took, body

    def start_web(self) -> None:
        """Start gunicorn; return once /readyz answers 200."""
        self.web = self._start("web", procfile_command("web"), {})
        wait_ready(self.web, "web", self._web_ready, "web not ready")
        log(f"web up on port {self.port}: `{procfile_command('web')}`, "
            f"{len(children(self.web.pid))} worker processes")

    def _web_ready(self) -> bool:
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def start_worker(self, queue: ReadingQueue) -> None:
        """Start the Celery worker; return once a drain reads the queue."""
        command = procfile_command("worker") + f" --hostname bench-{os.getpid()}@%h"
        if self.worker_concurrency:
            command += f" --concurrency {self.worker_concurrency}"
        self.worker = self._start("worker", command, {"WORKER_METRICS_PORT": str(spare_port())})
        wait_ready(self.worker, "worker", lambda: draining(queue),
                   "the worker did not start draining")
        log(f"worker up: `{command}`, {len(children(self.worker.pid))} child processes "
            "(pool and embedded beat)")

    def stop_worker(self) -> None:
        stop_group(self.worker)
        self.worker = None

    def stop(self) -> None:
        """Stop every process the stack started."""
        for proc in self.others.values():
            stop_group(proc)
        self.others = {}
        self.stop_worker()
        stop_group(self.web)
        self.web = None


def wait_ready(proc: subprocess.Popen, name: str, ready: Callable[[], bool], late: str) -> None:
    """Poll ready() until it holds; raise if the process exits or READY_WAIT_S pass."""
    deadline = time.monotonic() + READY_WAIT_S
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); see {LOGS / name}.log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{late} within {READY_WAIT_S} s; see {LOGS / name}.log")
        time.sleep(0.2)


def stop_group(proc: subprocess.Popen | None, timeout_s: float = 30) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    except ProcessLookupError:
        pass
    proc.wait(10)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def procfile_command(name: str) -> str:
    """The command of a Procfile process (`web`, `worker`), as deployments run it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise RuntimeError(f"the Procfile has no `{name}` process")
