"""Scenario 8, MQTT end to end (issue 16): readings/s from publishing over MQTT to
stored in history, through a Mosquitto broker and the bridge (the Procfile's
`mqtt`) with the worker running, beside scenario 3's HTTP figure of the same run.

The scenario starts its own throwaway mosquitto on a spare port (anonymous,
no persistence, the limits of deploy/mosquitto/mosquitto.conf raised as there)
and the bridge on it, both stopped at its end. Two publisher processes send one
reading a message at QoS 1 at full speed (bench/load/mqtt.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.config import LOGS, log
from bench.load.mqtt import publish_and_store
from bench.scenario import Figure, Scenario
from bench.stack import procfile_command, stop_group, wait_ready
from bench.stats import median_of
from tests.servers import port_open, spare_port

PUBLISHERS = 2
# As deploy/mosquitto/mosquitto.conf: mosquitto's defaults (20 in flight, 1,000
# queued) would make the broker, not the bridge, the limit.
BROKER_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 2000
max_queued_messages 2000000
max_queued_bytes 0
log_dest stderr
log_type error
log_type warning
"""


class MqttEndToEnd(Scenario):
    number = 8
    worker = True
    sizes = {"s8_readings": (200_000, 20_000), "s8_wait_s": (600, 180)}
    table = (
        Figure("s8_stored_per_s", "8 MQTT end to end: publish to history", "readings/s"),
        Figure("s8_published_per_s", "8   published (PUBACKed) meanwhile", "readings/s"),
        Figure("s8_http_drained_per_s", "8   HTTP end to end (scenario 3, same run)", "readings/s"),
    )

    def prepare(self) -> None:
        self.names = ["mosquitto", "mqtt"]
        self.dir = tempfile.mkdtemp(prefix="bench-mosquitto-")
        port = spare_port()
        conf = Path(self.dir) / "mosquitto.conf"
        # As root mosquitto would switch to the `mosquitto` user.
        conf.write_text(BROKER_CONF.format(port=port) + ("user root\n" if os.geteuid() == 0 else ""))
        broker = self.bench.stack.spawn("mosquitto", f"mosquitto -c {conf}")
        wait_ready(broker, "mosquitto", lambda: port_open(port), "mosquitto did not listen")
        self.url = f"mqtt://127.0.0.1:{port}"
        bridge = self.bench.stack.spawn("mqtt", procfile_command("mqtt"), {
            "MQTT_URL": self.url, "MQTT_CLIENT_ID": f"bench-bridge-{os.getpid()}",
            "MQTT_METRICS_PORT": str(spare_port())})
        wait_ready(bridge, "mqtt", lambda: "subscribed to" in (LOGS / "mqtt.log").read_text(),
                   "the bridge did not subscribe")
        log(f"scenario 8: MQTT end to end, {self.size('s8_readings'):,.0f} readings, one a message "
            f"at QoS 1 from {PUBLISHERS} processes at full speed, through mosquitto (port {port}) and "
            f"`{procfile_command('mqtt')}` with the worker draining, x {self.bench.runs}")
        publish_and_store(self.url, self.bench.queue, 1000, PUBLISHERS, timeout_s=60)  # warm-up

    def before_run(self) -> None:
        self.bench.drain_or_flush()

    def run(self, i: int) -> dict:
        cpu = self.bench.cpu
        cpu.start()
        run = publish_and_store(self.url, self.bench.queue, int(self.size("s8_readings")), PUBLISHERS,
                                timeout_s=self.size("s8_wait_s"))
        run["cpu_pct"] = cpu.stop()
        run["all_stored"] = run["drained"] >= run["published"]
        log(f"  run {i + 1}: {run['end_to_end_readings_per_s']:,} readings/s stored "
            f"({run['drained']:,} in {run['end_to_end_seconds']} s), published at "
            f"{run['publish_readings_per_s']:,}/s, {run['refused']} refused"
            + ("" if run["all_stored"] else " (NOT ALL STORED in time)") + f"; CPU {run['cpu_pct']}")
        return run

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        figures = {"s8_stored_per_s": round(median_of(runs, "end_to_end_readings_per_s")),
                   "s8_published_per_s": round(median_of(runs, "publish_readings_per_s"))}
        if (http := self.bench.figures.get("s3_drained_per_s")) is not None:
            figures["s8_http_drained_per_s"] = http
        return figures

    def cleanup(self) -> None:
        for name in reversed(self.names):
            stop_group(self.bench.stack.others.pop(name, None))
        shutil.rmtree(self.dir, ignore_errors=True)


SCENARIO = MqttEndToEnd
