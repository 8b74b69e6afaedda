"""The load clients: wrk (wrk.py, with the Lua scripts in bench/wrk/) for closed-loop
HTTP at full speed, and a Python client (steady.py) for a steady rate with probes."""
