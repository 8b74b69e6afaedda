"""Workers started as the Procfile starts them: several on one host, and under honcho.

Each is its own Celery node with its own metrics, leaves nothing in /dev/shm,
and a Ctrl-C on honcho ends it with a warm shutdown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from inmemory import IN_MEMORY
from tests.conftest import INGEST, ROOT, WorkerProcess, count, wait_for
from tests.readings import NOW, vehicle

PROCFILE_WORKER = next(line.split(":", 1)[1].strip() for line in (ROOT / "Procfile").read_text().splitlines()
                       if line.startswith("worker:"))
METRICS_LINE = re.compile(r"worker metrics of (\S+) on :(\d+)/metrics")
VENV_BIN = str(Path(sys.executable).parent)


def procfile_env(settings, **extra: str) -> dict[str, str]:
    env = WorkerProcess(settings, Path(os.devnull)).env
    return {**env, "PATH": f"{VENV_BIN}:{env.get('PATH', '')}", **extra}


def start_procfile_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The Procfile's worker command, through a shell as honcho runs it."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(PROCFILE_WORKER, shell=True, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(proc: subprocess.Popen, worker_pid: int | None) -> None:
    """SIGTERM to the process group, as honcho sends it: the shell and the worker
    in it. The shell ends at once; wait for the worker's warm shutdown too."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
        if worker_pid:
            wait_for(lambda: not running(worker_pid), 60, f"worker {worker_pid} to exit")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_honcho(honcho: subprocess.Popen) -> None:
    """If a test left it running: its processes are in sessions of their own, so
    ask honcho to stop them (it kills them after 5 s) rather than kill it alone."""
    if honcho.poll() is None:
        honcho.terminate()
        try:
            honcho.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(10)


def metrics_folders(pid: int) -> list[Path]:
    return list(Path(IN_MEMORY or "/tmp").glob(f"energy-worker-metrics-{pid}-*"))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def counter(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_two_workers_on_one_host_are_two_nodes_with_their_own_metrics(settings, client, engine, tmp_path,
                                                                       unused_tcp_port):
    env = procfile_env(settings, WORKER_METRICS_PORT=str(unused_tcp_port))
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    procs = [start_procfile_worker(env, path) for path in logs]
    pids: list[int | None] = [None, None]
    try:
        def served() -> list[tuple[str, int]] | None:
            found = [METRICS_LINE.search(path.read_text(errors="replace")) for path in logs]
            return [(m[1], int(m[2])) for m in found] if all(found) else None

        wait_for(served, 60, "both workers to serve their metrics")
        (node_a, port_a), (node_b, port_b) = served()
        assert node_a != node_b and port_a != port_b
        pids = [int(re.match(r"worker-(\d+)@", node)[1]) for node in (node_a, node_b)]

        def pinged() -> set[str]:
            result = subprocess.run([sys.executable, "-m", "workers", "inspect", "ping", "--json",
                                     "--timeout", "5"], cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=60)
            assert "DuplicateNodenameWarning" not in result.stderr, result.stderr
            return set(json.loads(result.stdout or "{}"))  # {node: {"ok": "pong"}}

        wait_for(lambda: pinged() == {node_a, node_b}, 60, "both workers to answer inspect ping")

        readings = [vehicle(f"V-{i}", at=NOW) for i in range(400)]
        for i in range(0, len(readings), 20):
            assert client.post("/v1/ingest", json=readings[i:i + 20], headers=INGEST).status_code == 202
        wait_for(lambda: count(engine, "vehicle_readings") == len(readings), 60, "the readings to be stored")
        # Each port shows one node's figures, summed over its pool; together they count every reading once.
        pages = {node_a: scrape(port_a), node_b: scrape(port_b)}
        for node, page in pages.items():
            assert f'energy_worker_info{{node="{node}"}} 1.0' in page
        wait_for(lambda: sum(counter(scrape(p), "energy_drain_readings_total") for p in (port_a, port_b))
                 == len(readings), 10, "the metrics to count every stored reading once")

        assert all(metrics_folders(pid) for pid in pids), "each worker keeps its metrics in its own folder"
    finally:
        for proc, pid in zip(procs, pids, strict=True):
            stop(proc, pid)
    for path in logs:
        assert "Warm shutdown" in path.read_text(), path.read_text()[-3000:]
    assert not any(metrics_folders(pid) for pid in pids), "a worker left its metrics folder behind"


def test_ctrl_c_on_honcho_is_a_warm_shutdown(settings, client, tmp_path):
    """honcho sends SIGTERM to each process's whole group on Ctrl-C: the pool
    must not die mid-task (WorkerLostError), and nothing is logged as an ERROR."""
    (tmp_path / "Procfile").write_text(f"worker: {PROCFILE_WORKER}\n")
    (tmp_path / ".env").write_text("")
    env = procfile_env(settings, WORKER_METRICS_PORT="0")
    log_path = tmp_path / "honcho.log"
    for i in range(0, 2000, 200):
        batch = [vehicle(f"V-{n % 50}", at=NOW - timedelta(seconds=n)) for n in range(i, i + 200)]
        assert client.post("/v1/ingest", json=batch, headers=INGEST).status_code == 202
    libpq = make_url(settings.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as blocker:
        # Hold the history table so that a task is running when Ctrl-C comes.
        blocker.execute("LOCK TABLE vehicle_readings IN EXCLUSIVE MODE")
        with open(log_path, "ab") as log:
            honcho = subprocess.Popen(
                [f"{VENV_BIN}/honcho", "--procfile", str(tmp_path / "Procfile"), "--app-root", str(ROOT),
                 "--env", str(tmp_path / ".env"), "start", "worker"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: _waiting_on_lock(blocker), 60, "a drain task to block mid-batch")
            honcho.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
            wait_for(lambda: "Warm shutdown" in log_path.read_text(), 10, "the worker's warm shutdown")
            blocker.rollback()  # the task goes on, and finishes
            honcho.wait(30)
        finally:
            stop_honcho(honcho)
    output = log_path.read_text(errors="replace")
    assert "SIGKILL" not in output, "honcho had to kill the worker:\n" + output[-3000:]
    assert "WorkerLostError" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if '"level": "ERROR"' in line or "Traceback" in line]
    assert not errors, "\n".join(errors)
    assert re.search(r"worker\.1 stopped", output), output[-3000:]


def _waiting_on_lock(blocker: psycopg.Connection) -> bool:
    with psycopg.connect(blocker.info.dsn) as conn:
        return bool(conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO vehicle_readings%'").fetchone())



HONCHO_LINE = re.compile(r"^\d\d:\d\d:\d\d (\w+)\.\d+\s+\| (.*)$")


def test_every_process_of_make_run_logs_json_lines(settings, tmp_path, unused_tcp_port):
    """web (gunicorn's own lines too), worker and flower, started by honcho from
    the Procfile as `make run` does: every line each of them writes is a JSON object."""
    (tmp_path / ".env").write_text("")
    env = procfile_env(settings, WORKER_METRICS_PORT="0", FLOWER_PORT=str(unused_tcp_port),
                       FLOWER_BASIC_AUTH="operator:s3cret", WEB_CONCURRENCY="1")
    log_path = tmp_path / "honcho.log"
    with open(log_path, "ab") as log:
        honcho = subprocess.Popen(
            [f"{VENV_BIN}/honcho", "--env", str(tmp_path / ".env"), "start", "-p", str(unused_tcp_port + 1),
             "web", "worker", "flower"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def started() -> bool:
            text = log_path.read_text(errors="replace")
            assert honcho.poll() is None, text[-3000:]
            return all(s in text for s in ("Listening at", " ready.", "Visit me at"))

        wait_for(started, 90, "web, worker and flower to start")
        # The programs, children of the shells honcho started (pids in its log).
        shells = re.findall(r"(?:web|worker)\.1 started \(pid=(\d+)\)", log_path.read_text())
        programs = [pid for shell in shells for pid in children(int(shell))]
        assert len(programs) == 2
        honcho.send_signal(signal.SIGINT)
        honcho.wait(60)
    finally:
        stop_honcho(honcho)
    lines = [HONCHO_LINE.match(line) for line in log_path.read_text(errors="replace").splitlines()]
    seen, plain = set(), []
    for match in filter(None, lines):
        process, text = match.groups()
        if process == "system" or not text.strip():
            continue
        seen.add(process)
        try:
            assert isinstance(json.loads(text), dict)
        except (ValueError, AssertionError):
            plain.append(f"{process}: {text}")
    assert seen == {"web", "worker", "flower"}
    assert not plain, "lines that are not JSON:\n" + "\n".join(plain[:20])
    # Each process's metrics folder went with it: gunicorn's master's and the worker's.
    left = [p for pid in programs for p in Path(IN_MEMORY or "/tmp").glob(f"energy-*-metrics-{pid}-*")]
    assert not left, f"metrics folders left behind: {left}"
