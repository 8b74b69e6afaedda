"""Device credentials while Redis or PostgreSQL is down: changes still arrive, and a
process keeps the last registry it loaded rather than refusing every device."""

from __future__ import annotations

import dataclasses
import time

from tests.conftest import OPERATOR, wait_for
from tests.readings import meter
from tests.test_device_credentials import bearer, post, register
from web import create_app

pytest_plugins = ["tests.servers"]

PROPAGATION_S = 2.0


def closing(app) -> None:
    app.extensions["credentials"].close()
    app.extensions["engine"].dispose()
    app.extensions["queue"].close()


def test_a_device_disabled_while_redis_is_down_is_refused_within_2_s(settings, redis_server):
    app = create_app({"TESTING": True,
                      "SETTINGS": dataclasses.replace(settings, redis_url=redis_server.url)})
    try:
        client = app.test_client()
        token = register(client, ("M-1", "meter"))["M-1"]
        assert post(client, meter("M-1"), token).status_code == 202
        redis_server.stop()
        assert post(client, meter("M-1"), token).status_code == 503  # the queue is down
        # No message can announce this; the refresher polls the database's version.
        assert client.patch("/v1/devices/M-1", json={"disabled": True}, headers=OPERATOR).status_code == 200
        changed = time.monotonic()
        wait_for(lambda: post(client, meter("M-1"), token).status_code == 403, 10, "the refusal")
        assert time.monotonic() - changed < PROPAGATION_S
    finally:
        closing(app)


def test_a_database_outage_keeps_the_loaded_registry_and_changes_resume_after(
        settings, postgres_server):
    database_url = postgres_server.create_database("energy")
    postgres_server.migrate(database_url)
    app = create_app({"TESTING": True,
                      "SETTINGS": dataclasses.replace(settings, database_url=database_url)})
    try:
        client = app.test_client()
        token = register(client, ("M-1", "meter"))["M-1"]
        assert post(client, meter("M-1"), token).status_code == 202
        postgres_server.stop("fast")
        for _ in range(3):  # across several polls of the dead database
            assert post(client, meter("M-1"), token).status_code == 202
            time.sleep(0.5)
        assert client.post("/v1/ingest", json=meter("M-1"),
                           headers=bearer("x" * 43)).status_code == 401
        postgres_server.start()
        wait_for(lambda: client.patch("/v1/devices/M-1", json={"disabled": True},
                                      headers=OPERATOR).status_code == 200, 30, "the database")
        changed = time.monotonic()
        wait_for(lambda: post(client, meter("M-1"), token).status_code == 403, 10, "the refusal")
        assert time.monotonic() - changed < PROPAGATION_S
    finally:
        closing(app)
