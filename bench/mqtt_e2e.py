"""MQTT end to end: readings/s from publishing over MQTT to stored in history.

Publishes N new readings, one per message at QoS 1 (or --per-message readings
as one array on a device's topic), from --publishers processes at full speed,
to a broker that a running bridge (`mqtt`) reads, with running workers
draining the queue. The clock starts at the first publish and stops when the
workers have acknowledged N more readings as stored (the queue's drained
counter: an entry is acknowledged only after its transaction committed), so
the figure is publish → bridge → queue → history, the MQTT twin of
bench/run.py's scenario 3. Nothing else may ingest meanwhile.

As a module: `measure(...)` (bench/run.py starts the processes). Standalone:

    .venv/bin/python bench/mqtt_e2e.py --readings 20000            # against running processes
    .venv/bin/python bench/mqtt_e2e.py --readings 5000 --start     # starts a bridge and a worker

--start runs the Procfile's `mqtt` and `worker` commands with the environment
(DATABASE_URL, REDIS_URL, REDIS_PREFIX, MQTT_URL: a migrated database, please),
and stops them at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

import settings as settings_module  # noqa: E402
from simulator.mqtt import Publisher  # noqa: E402
from workers.queue import ReadingQueue  # noqa: E402

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
                 go: multiprocessing.Event, done: multiprocessing.Queue) -> None:
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


def measure(mqtt_url: str, queue: ReadingQueue, readings: int, publishers: int = 2,
            per_message: int = 1, timeout_s: float = 600) -> dict:
    """Publish `readings` and time them into history; see the module docstring."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    context = multiprocessing.get_context("spawn")
    go, done = context.Event(), context.Queue()
    procs = [context.Process(target=publish_part, args=(mqtt_url, p, publishers, readings, per_message,
                                                        start.isoformat(), go, done))
             for p in range(publishers)]
    for proc in procs:
        proc.start()
    time.sleep(2)  # let them connect and build their readings
    drained_before = int(queue.redis.get(queue.drained_key) or 0)
    began = time.monotonic()
    go.set()
    finishes = [done.get(timeout=timeout_s) for _ in procs]
    for proc in procs:
        proc.join(30)
    acked = sum(f[0] for f in finishes)
    published_s = max(f[2] for f in finishes) - began
    deadline = began + timeout_s
    while (drained := int(queue.redis.get(queue.drained_key) or 0) - drained_before) < acked:
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


def start_processes(log_dir: Path) -> list[subprocess.Popen]:
    """The Procfile's `mqtt` and `worker`, with this environment, in their own process groups."""
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in ("mqtt", "worker"):
        with open(log_dir / f"{name}.log", "ab") as log:
            procs.append(subprocess.Popen(procfile[name], shell=True, cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def stop_processes(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--publishers", type=int, default=2, help="publishing processes")
    parser.add_argument("--per-message", type=int, default=1, help="readings per message (an array)")
    parser.add_argument("--start", action="store_true", help="start a bridge and a worker first")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    settings = settings_module.load()
    queue = ReadingQueue.from_url(settings.redis_url, settings.redis_prefix)
    procs = start_processes(ROOT / "bench" / "logs" / "mqtt") if args.start else []
    try:
        if procs:
            time.sleep(8)  # the worker's start-up, and the bridge's subscriptions
        result = measure(settings.mqtt_url, queue, args.readings, args.publishers, args.per_message,
                         args.timeout)
    except (redis.RedisError, OSError) as exc:
        print(f"mqtt_e2e: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_processes(procs)
    print(json.dumps(result))
    # Drained counts redeliveries too (stored once): at least every reading published.
    return 0 if result["drained"] >= result["readings"] else 1


if __name__ == "__main__":
    sys.exit(main())
