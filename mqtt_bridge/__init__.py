"""The MQTT bridge (`python -m mqtt_bridge`, Procfile `mqtt`): devices that speak
MQTT publish readings to a broker, and the bridge queues them like POST /v1/ingest.

A thin edge: it turns MQTT framing into readings (messages.py), validates them
with the HTTP edge's own rules (validation.py), queues them with the workers'
queue code (workers/queue.py), and maps each outcome to an acknowledgement
(bridge.py). It imports neither Flask nor gunicorn (see validation.py for the
one exception left, until the shared rules have a package of their own).
"""
