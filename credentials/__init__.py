"""Per-device and per-gateway credentials, with no web framework in sight: token
making and hashing (tokens.py) and the per-process cache that answers "may this
token write this device's readings?" without a database query (cache.py).

HTTP ingest and the MQTT bridge both use them.
"""
