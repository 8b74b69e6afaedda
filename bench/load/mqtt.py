"""Scenario 8's client: readings published over MQTT at QoS 1, at full speed, from
several processes, timed until the workers have stored them.

Each publisher process (simulator.mqtt.Publisher, one connection) builds its
share of the readings, waits for the common start, publishes one reading a
message (or arrays of `per_message` on a device's topic) and awaits every
PUBACK. The clock starts at the first publish and stops when the workers have
acknowledged as many more readings as stored (the queue's drained counter: an
entry is acknowledged only after its transaction committed), so the figure is
publish -> broker -> bridge -> queue -> history. Nothing else may ingest meanwhile.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta

from simulator.mqtt import Publisher
from workers.queue import ReadingQueue

DEVICES = 10_000  # distinct meters (and as many vehicles) the readings spread over


def readings_of(part: int, parts: int, total: int, start: datetime) -> list[dict]:
    """This publisher's share of `total` distinct readings: meters and vehicles, alternating."""
    out = []
    for i in range(part, total, parts):
        device, step = (i // 2) % DEVICES, (i // 2) // DEVICES
        at = (start + timedelta(milliseconds=step)).isoformat().replace("+00:00", "Z")
        if i % 2:
            out.append({"vehicleId": f"VB-{device:05d}", "soc": 50.0, "kwhDeliveredDc": 0.125,
                        "batteryTemp": 30.0, "timestamp": at})
        else:
            out.append({"meterId": f"MB-{device:05d}", "kwhConsumedAc": 0.14, "voltage": 230.0,
                        "timestamp": at})
    return out


def publish_part(url: str, part: int, parts: int, total: int, per_message: int, start_iso: str,
                 go, done) -> None:
    """One publisher process: connect, wait for the start, publish its share, await every PUBACK."""
    readings = readings_of(part, parts, total, datetime.fromisoformat(start_iso))
    publisher = Publisher(url, client_id=f"bench-publisher-{part}-{os.getpid()}").connect()
    go.wait()
    if per_message == 1:
        messages = [[reading] for reading in readings]
    else:
        by_device: dict[str, list] = {}
        for reading in readings:
            by_device.setdefault(reading.get("meterId") or reading["vehicleId"], []).append(reading)
        messages = [group[i:i + per_message] for group in by_device.values()
                    for i in range(0, len(group), per_message)]
    for message in messages:
        while not publisher.room():
            time.sleep(0.0005)
        if per_message == 1:
            publisher.publish(message[0])
        else:
            publisher.publish_array(message)
    while publisher.pending:
        time.sleep(0.01)
    refused = sum(publisher.refused.values())
    # Counts are of messages: with arrays, the readings acknowledged are all or (refusals) unknown.
    acked = publisher.acked if per_message == 1 else (len(readings) if not refused else 0)
    done.put((acked, refused, time.monotonic()))
    publisher.close()


def drained_count(queue: ReadingQueue) -> int:
    """Readings the workers have acknowledged as stored, ever, over all shards."""
    return sum(int(queue.redis.get(shard.drained) or 0) for shard in queue.shards)


def publish_and_store(mqtt_url: str, queue: ReadingQueue, readings: int, publishers: int = 2,
                      per_message: int = 1, timeout_s: float = 600) -> dict:
    """Publish `readings` new readings (stamped from a minute back) and time them into
    history; see the module docstring."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    context = multiprocessing.get_context("spawn")
    go, done = context.Event(), context.Queue()
    procs = [context.Process(target=publish_part, args=(mqtt_url, p, publishers, readings, per_message,
                                                        start.isoformat(), go, done))
             for p in range(publishers)]
    for proc in procs:
        proc.start()
    time.sleep(2)  # let them connect and build their readings
    drained_before = drained_count(queue)
    began = time.monotonic()
    go.set()
    finishes = [done.get(timeout=timeout_s) for _ in procs]
    for proc in procs:
        proc.join(30)
    acked = sum(f[0] for f in finishes)
    published_s = max(f[2] for f in finishes) - began
    deadline = began + timeout_s
    while (drained := drained_count(queue) - drained_before) < acked:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    stored_s = time.monotonic() - began
    return {
        "readings": readings, "published": acked, "refused": sum(f[1] for f in finishes),
        "drained": drained, "publishers": publishers, "readings_per_message": per_message,
        "publish_seconds": round(published_s, 3), "publish_readings_per_s": round(acked / published_s),
        "end_to_end_seconds": round(stored_s, 3), "end_to_end_readings_per_s": round(drained / stored_s),
    }
