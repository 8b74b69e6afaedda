"""The scaling settings (docs/scaling.md): defaults that keep a deployment's
queue where it was, and bad values refused at start-up."""

from __future__ import annotations

import dataclasses

import pytest

import settings as settings_module
from workers.queue import ReadingQueue


def test_defaults_keep_the_unsharded_queues_keys(settings):
    queue = ReadingQueue.from_settings(settings)
    try:
        prefix = settings.redis_prefix
        assert [dataclasses.astuple(s) for s in queue.shards] == [(
            f"{prefix}:readings", f"{prefix}:backlog", f"{prefix}:drained", f"{prefix}:drain_rate")]
    finally:
        queue.close()


def test_shards_on_a_plain_redis_are_hash_tagged(settings):
    queue = ReadingQueue.from_settings(dataclasses.replace(settings, queue_shards=3))
    try:
        streams = [s.stream for s in queue.shards]
        assert len(set(streams)) == 3
        assert all(s.startswith(f"{settings.redis_prefix}:{{") for s in streams)
        queue.put([["m", "M-1", "2026-11-30T00:00:00Z", 1.0, 230.0]] * 150, max_backlog=1000)
        assert queue.backlog() == 150
    finally:
        queue.close()


def test_the_queue_and_the_broker_default_to_redis_url():
    s = settings_module.load({"REDIS_URL": "redis://elsewhere:6380/1"})
    assert s.queue_url == s.broker_url == "redis://elsewhere:6380/1"
    assert s.queue_shards == 1 and s.analytics_database_url is None
    s = settings_module.load({"QUEUE_REDIS_URL": "redis://node-1:7000/0", "QUEUE_SHARDS": "6",
                              "CELERY_BROKER_URL": "amqp://rabbit//"})
    assert (s.queue_url, s.queue_shards, s.broker_url) == ("redis://node-1:7000/0", 6, "amqp://rabbit//")


@pytest.mark.parametrize("name, value", [("QUEUE_SHARDS", "0"), ("QUEUE_SHARDS", "two"),
                                         ("MAX_REPLICA_LAG_S", "0"), ("MAX_REPLICA_LAG_S", "-1")])
def test_bad_scaling_settings_are_refused(name, value):
    with pytest.raises(settings_module.SettingsError, match=name):
        settings_module.load({name: value})
