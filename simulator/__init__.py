"""A fleet simulator: EVs and the smart meters that charge them.

`python -m simulator live ...` posts their readings to a running instance over
HTTP; `python -m simulator backfill ...` writes hours of their history straight
into the database. The physical model is simulator/fleet.py.
"""
