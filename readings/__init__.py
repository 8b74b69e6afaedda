"""Readings, whatever edge they arrive by: validation, timestamps and the queue's row format.

Imports neither Flask nor gunicorn, so that every edge (HTTP, an MQTT bridge)
and the workers share exactly the same rules.
"""
