"""`python -m mqtt_bridge` (the Procfile's `mqtt`): run one bridge process until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

import settings as settings_module
from logconfig import configure_logging
from mqtt_bridge import metrics
from mqtt_bridge.bridge import Bridge, SessionTakenOver
from mqtt_bridge.validation import validator
from workers.queue import ReadingQueue

log = logging.getLogger("mqtt_bridge")


def main() -> int:
    configure_logging()
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        print(f"mqtt bridge: {exc}", file=sys.stderr)
        return 2
    # Pooled, not single_connection: that one connects at once, and the bridge
    # must start (and hold its messages) while Redis is down.
    queue = ReadingQueue.from_settings(settings)
    bridge = Bridge(settings, queue, validator(settings))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: bridge.stop())
    metrics.serve(settings.mqtt_metrics_port)
    try:
        bridge.run()
    except SessionTakenOver as exc:
        log.error("another process connected with client id %s and took this bridge's session over "
                  "(or the broker keeps dropping it at once): give each bridge its own MQTT_CLIENT_ID "
                  "(or MQTT_BRIDGE_INDEX)", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
