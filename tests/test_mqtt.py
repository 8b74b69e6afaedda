"""The MQTT bridge against a throwaway mosquitto: readings published over MQTT are
queued like POST /v1/ingest, acknowledged only once queued, never lost when the
bridge dies or Redis stops, shared between bridges, and bad messages are kept
as dead letters while good ones flow."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest

import settings as settings_module
from mqtt_bridge.bridge import RECEIVE_MAXIMUM
from tests.conftest import OPERATOR, ROOT, count, wait_for
from tests.mqtt import BridgeProcess, as_message, publish
from tests.readings import NOW, iso, meter, vehicle
from workers.drain import drain
from workers.queue import ReadingQueue

pytest_plugins = ["tests.servers"]  # mosquitto, durable_redis_server

T0 = (NOW - timedelta(hours=3)).replace(minute=0, second=0)


@pytest.fixture
def bridge_factory(settings, mosquitto, tmp_path):
    """Start bridges on this test's queue and broker; all stopped after."""
    from tests.servers import spare_port  # after pytest has loaded it as a plugin

    started: list[BridgeProcess] = []

    def start(client_id: str = "test-bridge-1", metrics: bool = False, **env: str) -> BridgeProcess:
        bridge = BridgeProcess(settings, mosquitto.url, client_id, tmp_path / f"{client_id}.log",
                               metrics_port=spare_port() if metrics else 0, **env)
        started.append(bridge)
        return bridge.start()

    yield start
    for bridge in started:
        bridge.stop()


def stored_meter_readings(engine) -> int:
    return count(engine, "meter_readings")


def meter_stream(n: int, meters: int = 100) -> list[tuple[str, str]]:
    """n distinct meter readings, one message each, spread over `meters` meters."""
    return [as_message(meter(f"M-{i % meters}", ac=0.5, at=T0 + timedelta(seconds=i // meters)))
            for i in range(n)]


def queued_rows(queue: ReadingQueue) -> list[list]:
    """Every row in the queue's stream (entries not yet drained)."""
    return [row for _, fields in queue.redis.xrange(queue.stream)
            for row in json.loads(fields[b"r"])]


# -- 1. End to end ----------------------------------------------------------------


def test_readings_published_over_mqtt_reach_live_state_and_analytics_exactly(
        client, engine, mosquitto, bridge_factory, worker_factory):
    assert client.put("/v1/meters/M-1/vehicle", headers=OPERATOR,
                      json={"vehicleId": "V-1", "since": iso(T0)}).status_code == 200
    meters = [meter("M-1", ac=0.1 + i / 997, voltage=229 + i % 3, at=T0 + timedelta(minutes=i))
              for i in range(90)]
    vehicles = [vehicle("V-1", soc=20 + i * 0.5, dc=0.09 + i / 1013, temp=25 + i % 11,
                        at=T0 + timedelta(minutes=i)) for i in range(90)]
    bridge_factory()
    worker_factory()
    # Singles, and arrays of 30 (as a gateway would send a device's backlog).
    messages = [as_message(r) for r in meters[:60]] + [
        ("telemetry/meters/M-1", json.dumps(meters[60:90])),
        ("telemetry/vehicles/V-1", json.dumps(vehicles[:30])),
    ] + [as_message(r) for r in vehicles[30:]]
    publish(mosquitto.port, messages)

    wait_for(lambda: count(engine, "meter_readings") == 90 and count(engine, "vehicle_readings") == 90,
             60, "the published readings to be stored")
    window = {"from": iso(T0), "to": iso(T0 + timedelta(hours=2))}
    body = client.get("/v1/analytics/performance/V-1", headers=OPERATOR, query_string=window).json
    ac, dc = math.fsum(r["kwhConsumedAc"] for r in meters), math.fsum(r["kwhDeliveredDc"] for r in vehicles)
    assert body["totalEnergy"]["acConsumedKwh"] == pytest.approx(ac, rel=1e-9)
    assert body["totalEnergy"]["dcDeliveredKwh"] == pytest.approx(dc, rel=1e-9)
    assert body["avgBatteryTemp"] == pytest.approx(sum(r["batteryTemp"] for r in vehicles) / 90, rel=1e-9)
    assert body["readings"] == {"meter": 90, "vehicle": 90}
    newest = vehicles[-1]
    assert client.get("/v1/live/vehicles/V-1", headers=OPERATOR).json == {
        "vehicleId": "V-1", "soc": newest["soc"], "kwhDeliveredDc": newest["kwhDeliveredDc"],
        "batteryTemp": newest["batteryTemp"], "timestamp": newest["timestamp"]}
    live_meter = client.get("/v1/live/meters/M-1", headers=OPERATOR).json
    assert live_meter["kwhConsumedAc"] == meters[-1]["kwhConsumedAc"]


# -- 2. Nothing the broker held is lost ---------------------------------------------


def test_bridge_sigkilled_mid_stream_and_restarted_leaves_exactly_every_reading(
        queue, engine, mosquitto, bridge_factory, worker_factory):
    total = 20_000
    bridge = bridge_factory()
    worker_factory()
    publisher = threading.Thread(target=publish, args=(mosquitto.port, meter_stream(total)))
    publisher.start()
    try:
        wait_for(lambda: queue.backlog() + stored_meter_readings(engine) >= 3000, 60,
                 "the bridge to queue a few thousand readings")
        bridge.kill()
        at_kill = queue.backlog() + stored_meter_readings(engine)
        time.sleep(1)  # the stream goes on into the dead bridge's session
        bridge.start()
    finally:
        publisher.join(180)
    assert at_kill < total, "the bridge was killed after the stream had ended"
    assert "(resumed session)" in bridge.log()
    wait_for(lambda: stored_meter_readings(engine) == total and queue.backlog() == 0, 120,
             "every published reading to be stored")
    assert stored_meter_readings(engine) == total


def test_two_bridges_on_a_shared_subscription_queue_each_message_once(queue, mosquitto, bridge_factory):
    total = 4000
    bridges = [bridge_factory("test-bridge-a", metrics=True), bridge_factory("test-bridge-b", metrics=True)]
    publish(mosquitto.port, meter_stream(total))
    wait_for(lambda: queue.backlog() >= total, 60, "every message to be queued")
    time.sleep(1)  # a message queued twice would show by now
    rows = queued_rows(queue)
    assert len(rows) == total
    assert len({(row[1], row[2]) for row in rows}) == total
    shares = [b.metric("energy_mqtt_messages_total", outcome="queued") for b in bridges]
    assert sum(shares) == total and min(shares) > 0, shares


def test_redis_stopped_for_10_s_loses_nothing_even_if_the_bridge_dies_meanwhile(
        settings, engine, mosquitto, durable_redis_server, tmp_path):
    own = dataclasses.replace(settings, redis_url=durable_redis_server.url)
    bridge = BridgeProcess(own, mosquitto.url, "test-bridge-redis", tmp_path / "bridge.log").start()
    queue = ReadingQueue.from_url(own.redis_url, own.redis_prefix)
    try:
        stream = meter_stream(2000)
        publish(mosquitto.port, stream[:1000])
        wait_for(lambda: queue.backlog() == 1000, 30, "the first half to be queued")
        durable_redis_server.stop()
        down_at = time.monotonic()
        publish(mosquitto.port, stream[1000:])  # the broker takes them; the bridge cannot queue them
        wait_for(lambda: "(queue_unavailable): holding acknowledgements" in bridge.log(), 30,
                 "the bridge to hold a batch")
        time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))  # the outage lasts 10 s
        assert bridge.proc.poll() is None
        # What the bridge holds it has not acknowledged: killed, it loses none of it.
        bridge.kill()
        bridge.start()
        durable_redis_server.start()  # same port, same AOF
        wait_for(lambda: queue.backlog() >= 2000, 60, "the bridge to resume on its own")
        drain(queue, engine, "test-drainer", dataclasses.replace(own, drain_interval_s=0.01), budget_s=10)
        assert stored_meter_readings(engine) == 2000
    finally:
        bridge.stop()
        queue.close()


def test_full_queue_holds_acknowledgements_until_the_workers_make_room(
        queue, engine, mosquitto, bridge_factory, drain_all):
    queue.put([["m", "M-x", iso(T0 + timedelta(seconds=i)), 1.0, 230.0] for i in range(200)], 10_000)
    bridge = bridge_factory(metrics=True, MAX_BACKLOG="200", MAX_BACKLOG_SECONDS="0")
    publish(mosquitto.port, meter_stream(3000))
    # It stops reading: the broker sends no more than the bridge's Receive Maximum
    # unacknowledged, and keeps the rest.
    wait_for(lambda: bridge.metric("energy_mqtt_held_messages") == RECEIVE_MAXIMUM, 30,
             "the bridge to hold as many messages as it may")
    time.sleep(1)  # it keeps retrying meanwhile
    assert bridge.metric("energy_mqtt_held_messages") == RECEIVE_MAXIMUM
    assert "(backlog_full): holding acknowledgements" in bridge.log()
    assert queue.backlog() == 200  # nothing queued (nor acknowledged) while full
    # Each drain makes room, and the bridge queues what it holds (in batches of
    # whatever had arrived: one may have to wait for the next drain).
    wait_for(lambda: drain_all() and stored_meter_readings(engine) == 3200, 60,
             "the bridge to resume whenever there is room")


# -- 3. Bad messages -------------------------------------------------------------------


def test_each_kind_of_bad_message_is_dead_lettered_while_good_ones_flow(
        client, engine, mosquitto, bridge_factory, drain_all):
    bridge = bridge_factory(metrics=True, MAX_BODY_BYTES="2000", MAX_BATCH="3")
    secret = "hunter2-secret"
    bad = {
        "invalid_json": ("telemetry/meters/M-1", '{"meterId": "M-1", "token": "' + secret + '"'),
        "invalid": ("telemetry/meters/M-1", json.dumps(meter("M-1", voltage=0, token=secret))),
        "topic_mismatch": ("telemetry/meters/M-1", json.dumps(meter("M-2"))),
        "too_large": ("telemetry/vehicles/V-1", json.dumps([vehicle("V-1", note=secret * 200)])),
        "too_many": ("telemetry/meters/M-1",
                     json.dumps([meter("M-1", at=T0 + timedelta(minutes=i)) for i in range(4)])),
    }
    good_before, good_after = as_message(meter("M-1", at=T0)), as_message(vehicle("V-1", at=T0))
    publish(mosquitto.port, [good_before, *bad.values(), good_after])
    wait_for(lambda: queue_settled(bridge, 7), 30, "the bridge to handle every message")
    drain_all()

    assert count(engine, "meter_readings") == 1 and count(engine, "vehicle_readings") == 1
    letters = client.get("/v1/dead-letters", headers=OPERATOR).json["deadLetters"]
    assert [letter["reason"].partition(":")[0] for letter in letters] == list(bad)
    for letter, (reason, (topic, payload)) in zip(letters, bad.items(), strict=True):
        assert letter["source"] == "mqtt" and letter["topic"] == topic
        assert letter["payload"] == payload[:4096]
        assert bridge.metric("energy_mqtt_messages_total", outcome=reason) == 1
    assert "4 readings" not in letters[4]["reason"] and "At most 3" in letters[4]["reason"]
    assert "voltage" in letters[1]["reason"]
    assert bridge.metric("energy_mqtt_messages_total", outcome="queued") == 2
    assert secret not in bridge.log()
    # Only the database's dead letters can be re-driven: these need their device.
    assert client.post("/v1/dead-letters/redrive", headers=OPERATOR).json == {"redriven": 0}


def queue_settled(bridge: BridgeProcess, messages: int) -> bool:
    handled = sum(bridge.metric("energy_mqtt_messages_total", outcome=o)
                  for o in ("queued", "invalid_json", "invalid", "topic_mismatch", "too_large", "too_many"))
    return handled == messages


# -- 4. The process -----------------------------------------------------------------------


def test_bad_mqtt_url_stops_the_bridge_with_one_line_naming_it():
    result = subprocess.run([sys.executable, "-m", "mqtt_bridge"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "INGEST_TOKENS": "t", "OPERATOR_TOKENS": "t",
                                 "MQTT_URL": "http://bridge:s3cret@broker:1883"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "MQTT_URL" in result.stderr
    assert "s3cret" not in result.stderr


def test_a_second_bridge_with_the_same_client_id_makes_one_exit_saying_so(settings, mosquitto, tmp_path):
    first = BridgeProcess(settings, mosquitto.url, "test-bridge-twin", tmp_path / "first.log").start()
    second = BridgeProcess(settings, mosquitto.url, "test-bridge-twin", tmp_path / "second.log")
    try:
        second.start()
    except AssertionError:
        pass  # it may be the one that gives up, before it says it subscribed
    try:
        wait_for(lambda: first.proc.poll() is not None or second.proc.poll() is not None, 60,
                 "one of the twins to give up")
        loser, winner = (first, second) if first.proc.poll() is not None else (second, first)
        assert loser.proc.returncode == 1
        assert "give each bridge its own MQTT_CLIENT_ID" in loser.log()
        assert winner.proc.poll() is None
    finally:
        first.stop()
        second.stop()


def test_bridge_imports_neither_flask_nor_gunicorn():
    probe = "import sys, mqtt_bridge.bridge; print(sorted({'flask', 'gunicorn'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# -- 5. The shipped broker configuration ---------------------------------------------------


@pytest.fixture
def shipped_mosquitto(tmp_path):
    """A mosquitto running deploy/mosquitto/ (its passwd and acl), on a spare port."""
    from tests.servers import MosquittoServer, spare_port

    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "deploy" / "mosquitto", config_dir)
    (tmp_path / "data").mkdir()
    server = MosquittoServer(tmp_path, spare_port())
    config = (config_dir / "mosquitto.conf").read_text()
    config = config.replace("/mosquitto/config", str(config_dir))
    config = config.replace("/mosquitto/data", str(tmp_path / "data"))
    config = config.replace("\nlistener 1883\n", f"\nlistener {server.port} 127.0.0.1\n")
    try:
        yield server.start(config=config)
    finally:
        server.stop()


def connect_as(port: int, user: str | None, password: str | None) -> tuple[mqtt.Client, list]:
    """A device's client (or None for refused) and the CONNACK reason codes it saw."""
    seen: list = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, flags, reason, props: seen.append(reason)
    if user:
        client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(lambda: seen, 10, "a CONNACK")
    return client, seen


def test_shipped_broker_config_lets_a_device_publish_its_own_topic_only(settings, queue, shipped_mosquitto,
                                                                         tmp_path):
    url = f"mqtt://energy-bridge:dev-bridge-password@127.0.0.1:{shipped_mosquitto.port}"
    bridge = BridgeProcess(settings, url, "test-bridge-acl", tmp_path / "bridge.log").start()
    try:
        anonymous, seen = connect_as(shipped_mosquitto.port, None, None)
        anonymous.loop_stop()
        assert seen[0].is_failure
        device, seen = connect_as(shipped_mosquitto.port, "M-00001", "dev-device-password")
        assert not seen[0].is_failure
        own = device.publish("telemetry/meters/M-00001", json.dumps(meter("M-00001", at=T0)), qos=1)
        other = device.publish("telemetry/meters/M-00002", json.dumps(meter("M-00002", at=T0)), qos=1)
        own.wait_for_publish(10)
        other.wait_for_publish(10)
        wait_for(lambda: queue.backlog() == 1, 30, "the device's own reading to be queued")
        time.sleep(1)  # the other one, had the broker let it through, would be queued by now
        assert [row[1] for row in queued_rows(queue)] == ["M-00001"]
        device.disconnect()
        device.loop_stop()
    finally:
        bridge.stop()


# -- 6. The simulator over MQTT ---------------------------------------------------------------


def test_simulator_publishes_the_fleet_over_mqtt_to_the_bridge(queue, mosquitto, bridge_factory):
    bridge_factory()
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "live", "--mqtt", mosquitto.url, "--no-link",
         "--vehicles", "10", "--meters", "10", "--rate", "500", "--duration", "3", "--speed", "60",
         "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"live: ([\d,]+) readings accepted in ([\d,]+) messages", done.stdout)
    assert match, done.stdout
    accepted, published = (int(g.replace(",", "")) for g in match.groups())
    assert 20 <= accepted == published <= 20 * 5  # one message per reading
    wait_for(lambda: queue.backlog() == accepted, 30, "the bridge to queue every published reading")
    devices = {row[1] for row in queued_rows(queue)}
    assert devices == {f"M-{i:02d}" for i in range(1, 11)} | {f"V-{i:02d}" for i in range(1, 11)}


def test_mqtt_settings_are_parsed_and_checked():
    env = {"INGEST_TOKENS": "t", "OPERATOR_TOKENS": "t"}
    broker = settings_module.parse_mqtt_url("mqtts://energy-bridge:p%40ss@broker.example")
    assert (broker.host, broker.port, broker.tls, broker.username, broker.password) == (
        "broker.example", 8883, True, "energy-bridge", "p@ss")
    assert str(broker) == "mqtts://broker.example:8883"  # what logs show: no password
    loaded = settings_module.load({**env, "MQTT_BRIDGE_INDEX": "3"})
    assert loaded.mqtt_url == "mqtt://localhost:1883"
    assert loaded.mqtt_client_id.startswith("energy-bridge-") and loaded.mqtt_client_id.endswith("-3")
    assert settings_module.load(env).mqtt_client_id == settings_module.load(env).mqtt_client_id
    for name, value in [("MQTT_URL", "mqtt://host:70000"), ("MQTT_URL", "tcp://host:1883"),
                        ("MQTT_CLIENT_ID", "has space"), ("MQTT_BRIDGE_INDEX", "0"),
                        ("MQTT_SESSION_EXPIRY_S", "soon"), ("MQTT_CA_FILE", "/no/such/file")]:
        with pytest.raises(settings_module.SettingsError, match=name):
            settings_module.load({**env, name: value})
