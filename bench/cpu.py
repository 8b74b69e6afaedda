"""CPU time by component (web, worker, PostgreSQL, Redis, load client, other), from /proc.

A run's figures mean little without what used the cores meanwhile: on a shared
machine, processes that are not ours (FOREIGN) take CPU from the stack, and the
bench waits for them to quiet down before a run (QUIET_PCT) and reports them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.stack import Stack

CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET_PCT = 15  # % of a core that processes not ours may use before a run
FOREIGN = ("other", "postgres (other dbs)")


def foreign(cpu: dict[str, float]) -> float:
    """% of a core used by processes that are not the stack, its database or the load client."""
    return sum(cpu.get(k, 0.0) for k in FOREIGN)


class CpuMeter:
    """CPU time by component between start() and stop()."""

    def __init__(self, stack: Stack, db_name: str) -> None:
        self.stack = stack
        self.db_name = db_name

    def _category(self, pid: int, comm: str, pgrp: int, groups: dict[int, str]) -> str:
        if pgrp in groups:
            return groups[pgrp]
        if comm == "postgres":
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = ""
            if f" {self.db_name} " in cmd:
                return "postgres"
            if "(" in cmd or "[local]" in cmd:
                return "postgres (other dbs)"
            return "postgres (background)"
        if comm.startswith("redis-server"):
            return "redis"
        if comm == "wrk" or pid == os.getpid():
            return "load client"
        if pgrp == os.getpgrp():
            return "bench tools"
        return "other"

    def _snapshot(self) -> tuple[dict[int, tuple[str, int]], list[int]]:
        groups = self.stack.process_groups()
        procs = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2:].split()
            ticks = int(rest[11]) + int(rest[12])
            ppid, pgrp = int(rest[1]), int(rest[2])
            if pgrp not in groups and ppid in groups:
                # The worker's pool processes leave its group (workers/app.py); their
                # parent, the worker, leads it.
                pgrp = ppid
            procs[pid] = (self._category(pid, comm, pgrp, groups), ticks)
        with open("/proc/stat") as f:
            total = [int(x) for x in f.readline().split()[1:]]
        return procs, total

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before, self.total0 = self._snapshot()

    def stop(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Percent of one core per component (200 = both cores busy), plus `machine busy`."""
        after, total1 = self._snapshot()
        wall = time.monotonic() - self.t0
        used: dict[str, float] = {}
        for pid, (category, ticks) in after.items():
            delta = ticks - self.before.get(pid, (category, 0))[1]
            used[category] = used.get(category, 0.0) + delta / CLK_TCK
        for category, seconds in (extra or {}).items():
            used[category] = used.get(category, 0.0) + seconds
        out = {k: round(100 * v / wall, 1) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
               if v / wall >= 0.005}
        delta = [b - a for a, b in zip(self.total0, total1, strict=True)]
        idle = delta[3] + delta[4]
        out["machine busy"] = round(100 * os.cpu_count() * (1 - idle / max(1, sum(delta))), 1)
        return out


def us_per(cpu: dict[str, float], seconds: float, units: float) -> dict[str, float]:
    """CPU µs per unit (a reading, an entry) of each component, from a stop() result
    over `seconds`: what the sizing in docs/scaling.md multiplies out."""
    if units <= 0:
        return {}
    return {k: round(pct / 100 * seconds * 1e6 / units, 2) for k, pct in cpu.items()
            if k != "machine busy"}
