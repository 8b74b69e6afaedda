"""Settings are read and checked in one place; a bad one stops every process
with one line naming it and exit status 2, never a traceback."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import settings as settings_module
from tests.conftest import ROOT

BAD_VALUES = {
    "PORT": "eighty",
    "WEB_CONCURRENCY": "0",
    "WEB_CONNECTIONS": "lots",
    "WORKER_METRICS_PORT": "70000",
    "FLOWER_PORT": "-1",
    "LOG_FORMAT": "xml",
    "LOG_LEVEL": "verbose",
    "HEADER_TIMEOUT_S": "soon",
    "BODY_TIMEOUT_S": "0",
    "MAX_CONNECTIONS_PER_CLIENT": "0",
    "TRUSTED_PROXIES": "10.0.0.0/8, lb.internal",
    "MAX_BATCH": "1e3",
}

ENTRY_POINTS = {  # the Procfile's processes, and the simulator
    "web": [sys.executable, "-m", "gunicorn", "--config", "web/server/gunicorn_conf.py", "web:create_app()"],
    "worker": [sys.executable, "-m", "workers", "worker", "--beat"],
    "flower": [sys.executable, "-m", "celery", "--app", "workers.app", "flower"],
    "release": [sys.executable, "-m", "alembic", "upgrade", "head"],
    "simulator": [sys.executable, "-m", "simulator", "backfill", "--hours", "1"],
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_value_is_refused_naming_the_variable(name):
    with pytest.raises(settings_module.SettingsError, match=name):
        settings_module.load({name: BAD_VALUES[name]})


def test_the_edge_settings_are_read():
    s = settings_module.load({
        "PORT": "9000", "WEB_CONCURRENCY": "4", "WEB_CONNECTIONS": "5000", "HEADER_TIMEOUT_S": "2.5",
        "BODY_TIMEOUT_S": "30", "MAX_CONNECTIONS_PER_CLIENT": "64", "LOG_LEVEL": "debug",
        "LOG_FORMAT": "TEXT", "WORKER_METRICS_PORT": "0", "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,,",
    })
    assert (s.port, s.web_concurrency, s.web_connections) == (9000, 4, 5000)
    assert (s.header_timeout_s, s.body_timeout_s, s.max_connections_per_client) == (2.5, 30, 64)
    assert (s.log_level, s.log_format, s.worker_metrics_port) == ("DEBUG", "text", 0)
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))


def test_the_defaults_are_the_contracts():
    s = settings_module.load({})
    assert (s.header_timeout_s, s.body_timeout_s, s.trusted_proxies) == (10, 10, ())
    assert (s.port, s.web_connections, s.log_format, s.log_level) == (8000, 1000, "json", "INFO")


def run_with(command: list[str], name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "INGEST_TOKENS": "t1", "OPERATOR_TOKENS": "t2",
           "DATABASE_URL": "postgresql://127.0.0.1:1/nowhere", name: BAD_VALUES[name]}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_every_entry_point_stops_with_one_line_and_status_2(entry_point):
    with ThreadPoolExecutor(4) as pool:
        results = {name: pool.submit(run_with, ENTRY_POINTS[entry_point], name) for name in BAD_VALUES}
    results = {name: future.result() for name, future in results.items()}
    for name, result in results.items():
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 2, f"{entry_point} with a bad {name}: {result.returncode}\n{output}"
        assert len(output.splitlines()) == 1 and name in output, f"{entry_point}, {name}:\n{output}"
