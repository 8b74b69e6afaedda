"""Admission by drain time: while workers drain, ingest refuses a backlog they
would take longer than MAX_BACKLOG_SECONDS to store; while none drains, the
queue buffers up to MAX_BACKLOG."""

from __future__ import annotations

import dataclasses
import time

import pytest

from tests.conftest import INGEST
from tests.readings import meter
from web import create_app
from workers.queue import DRAIN_TIME_FLOOR, QueueFull, ReadingQueue

PROBE_S = 0.25


def fill(queue: ReadingQueue, readings: int) -> None:
    """Queue `readings` placeholder rows (the queue never looks inside them)."""
    queue.put([["m", "M-1"]] * readings, 10**9)


def drain_some(queue: ReadingQueue, readings: int) -> None:
    """Take and acknowledge about `readings`, as a worker does once they are stored."""
    queue.ensure_group()
    queue.ack(queue.take("drainer", readings, fill_wait_s=0))


def measured(queue: ReadingQueue, drained: int) -> None:
    """Let the rate probe see `drained` readings leave within one probe interval."""
    queue.put([["m", "M-1"]], 10**9, max_seconds=1, probe_s=PROBE_S)  # starts the interval
    drain_some(queue, drained)
    time.sleep(PROBE_S)  # the rate is readings per second: the interval must pass


def test_backlog_over_the_drain_time_is_refused(queue):
    fill(queue, DRAIN_TIME_FLOOR + 20_000)
    # 10,000 readings in at least PROBE_S: at most 40,000/s, so at most 40,000
    # readings in the second allowed, fewer than are queued.
    measured(queue, 10_000)
    backlog = queue.backlog()
    with pytest.raises(QueueFull):
        queue.put([["m", "M-2"]], 10**9, max_seconds=1, probe_s=PROBE_S)
    assert queue.backlog() == backlog  # nothing of the refused request was queued
    # The same backlog is accepted with time enough to drain it, or with the rule off.
    assert queue.put([["m", "M-2"]], 10**9, max_seconds=1000, probe_s=PROBE_S) == backlog + 1
    assert queue.put([["m", "M-2"]], 10**9) == backlog + 2


def test_backlog_under_the_floor_is_never_refused_for_drain_time(queue):
    fill(queue, DRAIN_TIME_FLOOR - 20_000)
    measured(queue, 10_000)
    assert queue.put([["m", "M-2"]], 10**9, max_seconds=0.001, probe_s=PROBE_S) > 0


def test_queue_buffers_while_nothing_drains(queue):
    """Workers down: the rate falls to zero and only MAX_BACKLOG limits the queue."""
    fill(queue, DRAIN_TIME_FLOOR + 20_000)
    measured(queue, 10_000)
    with pytest.raises(QueueFull):
        queue.put([["m", "M-2"]], 10**9, max_seconds=1, probe_s=PROBE_S)
    time.sleep(PROBE_S)  # a whole interval with nothing drained
    backlog = queue.backlog()
    assert queue.put([["m", "M-2"]], 10**9, max_seconds=1, probe_s=PROBE_S) == backlog + 1
    with pytest.raises(QueueFull):
        queue.put([["m", "M-2"]], backlog + 1, max_seconds=1, probe_s=PROBE_S)


def test_ingest_answers_503_over_the_drain_time(settings):
    app = create_app({"SETTINGS": dataclasses.replace(settings, max_backlog_s=0.001)})
    queue = app.extensions["queue"]
    fill(queue, DRAIN_TIME_FLOOR + 20_000)
    queue.put([["m", "M-1"]], 10**9, max_seconds=1)  # the first rate probe
    drain_some(queue, 10_000)
    client = app.test_client()
    # The web measures once a second: wait for the probe that sees the drain.
    deadline = time.monotonic() + 5
    while (response := client.post("/v1/ingest", json=meter(), headers=INGEST)).status_code == 202:
        assert time.monotonic() < deadline, "never refused"
        time.sleep(0.05)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
