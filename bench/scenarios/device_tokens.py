"""Scenario 7, single-reading POST with per-device tokens (issue 15): scenario 1's
load (wrk -t2 -c64, worker stopped) where every request carries the token of
the device it is from, for 10,000 devices, beside scenario 1's fleet-token
figure of the same bench run (target: within 10 %).

The devices are registered through the operator API (POST /v1/devices, arrays
of 1,000) before the warm-up, so that each web process has loaded the
credential registry before a measured run. Their tokens go to a file that
bench/wrk/ingest_devices.lua reads, readable by its owner only and deleted
afterwards. Without scenario 1 in the run, each run measures the fleet-token
figure itself, right after the device-token one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.config import OPERATOR_TOKEN, log
from bench.scenario import Acceptance, Figure, wrk_run
from bench.stats import median_of

CHUNK = 1000  # devices per POST /v1/devices
THREADS, CONNECTIONS = 2, 64  # as scenario 1


class DeviceTokenPost(Acceptance):
    number = 7
    sizes = {"s7_s": (30, 5), "s7_devices": (10_000, 2_000)}
    table = (
        Figure("s7_req_per_s", "7 single-reading POST, per-device tokens: throughput", "req/s"),
        Figure("s7_p99_ms", "7   latency p99", "ms"),
        Figure("s7_fleet_req_per_s", "7   with a fleet token, same bench run (scenario 1)", "req/s"),
        Figure("s7_fleet_p99_ms", "7   with a fleet token: p99", "ms"),
        Figure("s7_ratio", "7   device tokens / fleet token", "", (">=", 0.90)),
    )

    def prepare(self) -> None:
        devices = int(self.size("s7_devices"))
        self.dir = tempfile.mkdtemp(prefix="bench-devices-")
        started = time.monotonic()
        self.tokens = provision(self.bench.stack.url, Path(self.dir) / "tokens", devices)
        log(f"scenario 7: single-reading POST with per-device tokens for {devices:,} devices "
            f"(registered in {time.monotonic() - started:.1f} s), wrk -t{THREADS} -c{CONNECTIONS}, "
            f"{self.size('s7_s'):g} s x {self.bench.runs} (worker stopped: acceptance only)")
        self.fleet = {"req_per_s": self.bench.figures.get("s1_req_per_s"),
                      "p99_ms": self.bench.figures.get("s1_p99_ms")}
        if self.fleet["req_per_s"] is None:
            log("  scenario 1 is not in this run: each run measures the fleet-token figure too")
        self.bench.fresh_queue()
        self.wrk(3)  # warm-up: every web process loads the credential registry

    def wrk(self, seconds: float) -> dict:
        return self.bench.wrk_with_cpu(
            ["-s", "bench/wrk/ingest_devices.lua", self.bench.stack.url, "--", str(self.tokens),
             str(int(time.time()) - 600), str(THREADS)], seconds, THREADS, CONNECTIONS)

    def run(self, i: int) -> dict:
        r = self.wrk(self.size("s7_s"))
        run = wrk_run(r)
        if self.fleet["req_per_s"] is None:
            self.bench.fresh_queue()
            fleet = wrk_run(self.bench.ingest_wrk(f"s7r{i}", 1, self.size("s7_s"), THREADS, CONNECTIONS))
            run.update(fleet_req_per_s=fleet["req_per_s"], fleet_p99_ms=fleet["p99_ms"],
                       fleet_cpu_pct=fleet["cpu_pct"])
        log(f"  run {i + 1}: {run['req_per_s']:,.0f} req/s, p50 {run['p50_ms']:.1f} ms, "
            f"p99 {run['p99_ms']:.1f} ms"
            + (f"; fleet token {run['fleet_req_per_s']:,.0f} req/s, p99 {run['fleet_p99_ms']:.1f} ms"
               if "fleet_req_per_s" in run else "")
            + f"; wrk {r['cpu_pct_of_threads']} % of its threads; CPU {r['cpu_pct']}")
        return run

    def cleanup(self) -> None:
        super().cleanup()
        for path in Path(self.dir).glob("*"):
            path.unlink()
        os.rmdir(self.dir)

    def record(self, runs: list[dict]) -> None:
        super().record(runs)
        self.bench.details["s7_fleet_figure_from"] = (
            "scenario 1" if self.fleet["req_per_s"] is not None else "scenario 7's runs (1 not chosen)")

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        devices = median_of(runs, "req_per_s")
        fleet = self.fleet["req_per_s"] or median_of(runs, "fleet_req_per_s")
        return {"s7_req_per_s": round(devices), "s7_p99_ms": round(median_of(runs, "p99_ms"), 2),
                "s7_fleet_req_per_s": round(fleet),
                "s7_fleet_p99_ms": round(self.fleet["p99_ms"] or median_of(runs, "fleet_p99_ms"), 2),
                "s7_ratio": round(devices / fleet, 3)}


def provision(url: str, out: Path, count: int) -> Path:
    """Register `count` devices, meters and vehicles alternating (B7M0, B7V0, ...),
    and write their tokens to `out` as ingest_devices.lua reads them: one
    "meter|vehicle ID TOKEN" a line, the file readable by its owner only."""
    devices = [("meter", f"B7M{i // 2}") if i % 2 == 0 else ("vehicle", f"B7V{i // 2}")
               for i in range(count)]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as lines:
        for start in range(0, count, CHUNK):
            chunk = devices[start:start + CHUNK]
            for (kind, device_id), token in zip(chunk, register(url, chunk), strict=True):
                lines.write(f"{kind} {device_id} {token}\n")
    return out


def register(url: str, devices: list[tuple[str, str]]) -> list[str]:
    """Tokens of newly registered devices, in the order given."""
    request = urllib.request.Request(
        f"{url}/v1/devices", method="POST",
        data=json.dumps([{"id": i, "kind": k} for k, i in devices]).encode(),
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return [d["token"] for d in json.load(response)]
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST /v1/devices answered {exc.code}: {exc.read()[:200]!r}") from None


SCENARIO = DeviceTokenPost
