"""wrk, the HTTP load client of most scenarios: installed if missing, run, its figures read.

The Lua scripts in bench/wrk/ print one `BENCH_JSON {...}` line (requests, errors,
latency percentiles); run_wrk() returns it with wrk's own CPU use added, so a
report can show whether the client was the limit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from bench.config import LOGS, ROOT, log

ERRORS = ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")


def run_wrk(args: list[str], duration_s: float, threads: int, connections: int,
            timeout_s: int = 30) -> dict:
    """Run wrk; returns its BENCH_JSON line plus its own CPU use (from wait4)."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s",
            "--timeout", f"{timeout_s}s", *args]
    out_path = LOGS / "wrk.out"
    with open(out_path, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
    text = out_path.read_text(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(argv)}\n{text}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["seconds"] = result["duration_us"] / 1e6
    result["ok"] = result["requests"] - result["status_errors"]
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    # Share of wrk's threads' capacity used: near 100 % would mean wrk is the limit.
    result["cpu_pct_of_threads"] = round(100 * result["cpu_s"] / (wall * threads), 1)
    if bad := {k: result[k] for k in ERRORS if result[k]}:
        log(f"  wrk reported errors: {bad}")
    return result


def ensure_wrk() -> str:
    """wrk on PATH, installed from Debian's packages if missing (as .ci/run does for its
    tools); returns its version line."""
    if shutil.which("wrk") is None:
        log("wrk is missing: installing it (apt-get install wrk)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                       check=True, env=env)
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0].strip()
