"""Scenario 0, the load client check: wrk against GET /healthz, which does nothing,
shows the ceiling of what wrk and the web process can do on this machine."""

from __future__ import annotations

from bench.config import log
from bench.load.wrk import run_wrk
from bench.scenario import Figure, Scenario


class ClientCheck(Scenario):
    number = 0
    always = True
    repeated = False
    table = (
        Figure("client_healthz_req_per_s", "0 load client check: wrk on GET /healthz", "req/s"),
        Figure("client_wrk_cpu_max_pct", "0   wrk's CPU, most in any run", "% threads"),
    )

    def prepare(self) -> None:
        log("load client check: wrk against GET /healthz, 64 connections, 5 s")

    def run(self, i: int) -> dict:
        self.bench.cpu.start()
        r = run_wrk(["-s", "bench/wrk/get.lua", self.bench.stack.url, "--", "-", "/healthz", "1"],
                    5, 2, 64)
        cpu = self.bench.cpu.stop()
        log(f"  /healthz: {r['ok'] / r['seconds']:,.0f} req/s; wrk used {r['cpu_pct_of_threads']} % "
            f"of its 2 threads; CPU by component (% of a core): {cpu}")
        return {"healthz_req_per_s": round(r["ok"] / r["seconds"]),
                "wrk_cpu_pct_of_its_threads": r["cpu_pct_of_threads"], "cpu_pct": cpu}

    def record(self, runs: list[dict]) -> None:
        self.bench.figures["client_healthz_req_per_s"] = runs[0]["healthz_req_per_s"]
        self.bench.details["client_ceiling"] = runs[0]


SCENARIO = ClientCheck
