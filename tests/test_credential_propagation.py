"""Device credentials in a running gunicorn with several processes: revocation,
disabling and rotation reach every process within 2 s, and no token is ever logged."""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

from sqlalchemy import Engine, text

from tests.conftest import OPERATOR, Gunicorn, child_pids, wait_for
from tests.readings import meter

PROPAGATION_S = 2.0
PROCESSES = 3


def call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, object]:
    payload = None if body is None else json.dumps(body)
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json",
                                                      **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    return response.status, json.loads(raw) if raw else None


def operator(web: Gunicorn, method: str, path: str, body: object = None) -> object:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    status, answer = call(conn, method, path, body, OPERATOR)
    conn.close()
    assert status in (200, 201), (status, answer)
    return answer


def ingest_status(conn: http.client.HTTPConnection, token: str, reading: dict) -> int:
    return call(conn, "POST", "/v1/ingest", reading, {"Authorization": f"Bearer {token}"})[0]


def serving_pid(pids: set[int], server_port: int, client_port: int) -> int | None:
    """Which of the processes holds the server side of the connection from client_port."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


def connections_to_every_process(web: Gunicorn, token: str) -> list[http.client.HTTPConnection]:
    """Kept-alive connections, at least one served by each web process (each has posted once)."""
    pids = wait_for(lambda: (p := set(child_pids(web.proc.pid))) and len(p) == PROCESSES and p, 30,
                    "the web processes")
    conns, covered = [], set()
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        assert ingest_status(conn, token, meter("M-1")) == 202
        pid = serving_pid(pids, web.port, conn.sock.getsockname()[1])
        if pid not in covered:
            covered.add(pid)
            conns.append(conn)
        else:
            conn.close()
        if covered == pids:
            return conns
    raise AssertionError(f"only reached processes {covered} of {pids}")


def seconds_until_everywhere(conns: list, token: str, reading: dict, status: int,
                             since: float) -> float:
    """How long after `since` every connection's process answered `status` (polled)."""
    pending = set(range(len(conns)))
    while pending and time.monotonic() - since < 10:
        for i in list(pending):
            if ingest_status(conns[i], token, reading) == status:
                pending.discard(i)
    assert not pending, f"still not {status} after 10 s on {len(pending)} processes"
    return time.monotonic() - since


def test_disable_rotate_and_silent_changes_reach_every_process_within_2_s(
        gunicorn_factory, engine: Engine):
    web = gunicorn_factory(WEB_CONCURRENCY=str(PROCESSES))
    token = operator(web, "POST", "/v1/devices", {"id": "M-1", "kind": "meter"})["token"]
    conns = connections_to_every_process(web, token)

    operator(web, "PATCH", "/v1/devices/M-1", {"disabled": True})
    assert seconds_until_everywhere(conns, token, meter("M-1"), 403, time.monotonic()) < PROPAGATION_S
    operator(web, "PATCH", "/v1/devices/M-1", {"disabled": False})
    assert seconds_until_everywhere(conns, token, meter("M-1"), 202, time.monotonic()) < PROPAGATION_S

    new = operator(web, "POST", "/v1/devices/M-1/token")["token"]
    changed = time.monotonic()
    assert seconds_until_everywhere(conns, token, meter("M-1"), 401, changed) < PROPAGATION_S
    assert seconds_until_everywhere(conns, new, meter("M-1"), 202, changed) < PROPAGATION_S

    # A change no Redis message announces (lost, or Redis down) still arrives by polling.
    with engine.begin() as conn:
        conn.execute(text("UPDATE devices SET disabled = true WHERE id = 'M-1'"))
        conn.execute(text("UPDATE credential_version SET version = version + 1"))
    assert seconds_until_everywhere(conns, new, meter("M-1"), 403, time.monotonic()) < PROPAGATION_S
    for conn in conns:
        conn.close()


def test_no_token_is_ever_logged(gunicorn_factory, unused_tcp_port):
    """Every path a token takes, at DEBUG with an access log, errors included."""
    web = gunicorn_factory(LOG_LEVEL="DEBUG", GUNICORN_CMD_ARGS="--access-logfile -")
    tokens = [d["token"] for d in operator(web, "POST", "/v1/devices", [
        {"id": "M-1", "kind": "meter"}, {"id": "M-2", "kind": "meter"}])]
    gateway = operator(web, "POST", "/v1/gateways", {"id": "G-1"})["token"]
    operator(web, "PUT", "/v1/gateways/G-1/devices/M-2")
    tokens += [gateway, operator(web, "POST", "/v1/devices/M-2/token")["token"]]
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    assert ingest_status(conn, tokens[0], meter("M-1")) == 202
    assert ingest_status(conn, tokens[0], meter("M-2")) == 403
    assert ingest_status(conn, tokens[0], {"meterId": "M-1"}) == 422
    assert call(conn, "GET", "/v1/devices", headers={"Authorization": f"Bearer {tokens[0]}"})[0] == 403
    wait_for(lambda: ingest_status(conn, gateway, meter("M-2")) == 202, 5, "the gateway")
    assert ingest_status(conn, tokens[0] + "x", meter("M-1")) == 401
    conn.close()
    # A process whose database is gone: the credentials cannot load, errors are logged.
    broken = gunicorn_factory(DATABASE_URL=f"postgresql://127.0.0.1:{unused_tcp_port}/energy",
                              WEB_CONCURRENCY="1",
                              LOG_LEVEL="DEBUG", GUNICORN_CMD_ARGS="--access-logfile -")
    conn = http.client.HTTPConnection("127.0.0.1", broken.port, timeout=30)
    assert ingest_status(conn, tokens[1], meter("M-1")) == 503
    conn.close()

    logs = web.log() + broken.log()
    assert '"POST /v1/ingest' in logs and "cannot refresh device credentials" in logs
    for token in tokens:
        assert token not in logs
