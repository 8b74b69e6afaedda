"""Operator surfaces: Flower (from the Procfile) refuses requests without its
credentials, and no token ever reaches the logs."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import subprocess

import pytest

from tests.conftest import INGEST, OPERATOR, ROOT, wait_for
from tests.readings import meter


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in Procfile")


def get(port: int, headers: dict[str, str] | None = None) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/", headers=headers or {})
        return conn.getresponse().status
    except OSError:
        return None


@pytest.fixture
def flower_env(settings, unused_tcp_port):
    return {**os.environ, "REDIS_URL": settings.redis_url, "REDIS_PREFIX": settings.redis_prefix,
            "DATABASE_URL": settings.database_url, "FLOWER_PORT": str(unused_tcp_port),
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}


def test_flower_refuses_requests_without_its_credentials(flower_env):
    env = {**flower_env, "FLOWER_BASIC_AUTH": "operator:s3cret"}
    port = int(env["FLOWER_PORT"])
    proc = subprocess.Popen(["sh", "-c", f"exec {procfile_command('flower')}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: get(port), 60, "Flower to listen") == 401
        wrong = base64.b64encode(b"operator:guess").decode()
        assert get(port, {"Authorization": f"Basic {wrong}"}) == 401
        right = base64.b64encode(b"operator:s3cret").decode()
        assert get(port, {"Authorization": f"Basic {right}"}) == 200
    finally:
        proc.terminate()
        proc.wait(20)


def test_flower_will_not_start_without_credentials(flower_env):
    env = {k: v for k, v in flower_env.items() if k != "FLOWER_BASIC_AUTH"}
    done = subprocess.run(["sh", "-c", procfile_command("flower")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "FLOWER_BASIC_AUTH" in done.stderr


def test_no_token_appears_in_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/v1/ingest", json=meter(), headers=INGEST)
    client.post("/v1/ingest", json=meter(), headers=OPERATOR)
    client.post("/v1/ingest", json=[meter(voltage=-1)], headers=INGEST)
    client.get("/v1/live/meters/M-101", headers={"Authorization": "Bearer guessed-token"})
    client.get("/v1/live/meters/M-101", headers=OPERATOR)
    assert caplog.records, "expected the app to log something at DEBUG"
    for token in ("test-ingest", "test-operator", "guessed-token"):
        assert token not in caplog.text
