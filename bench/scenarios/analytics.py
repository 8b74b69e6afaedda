"""Scenario 5, analytics over the backfilled day: GET /v1/analytics/performance for
random vehicles with wrk, sequentially and 16 concurrent; then where a request's
time goes (EXPLAIN ANALYZE, the query from Python), and the fleet endpoint."""

from __future__ import annotations

import json
import random
import statistics
import time

from sqlalchemy import text

from bench.backfill import Day
from bench.config import DATABASE_URL, OPERATOR_TOKEN, iso, log
from bench.load.wrk import run_wrk
from bench.scenario import Figure, Scenario
from bench.stack import Stack
from bench.stats import median_of, percentile
from models.analytics import PERFORMANCE, vehicle_performance
from models.db import create_db_engine
from models.figures import reads_history
from models.rollups import rollup_marks
from models.windows import split_window

FLEET_CALLS = 7  # the first is a warm-up


class Analytics(Scenario):
    number = 5
    sizes = {"s5_s": (20, 4)}
    table = (
        Figure("s5_seq_p50_ms", "5 analytics, full day, sequential: p50", "ms"),
        Figure("s5_seq_p99_ms", "5   sequential p99", "ms", ("<=", 5)),
        Figure("s5_c16_p50_ms", "5   16 concurrent: p50", "ms"),
        Figure("s5_c16_p99_ms", "5   16 concurrent: p99", "ms"),
        Figure("s5_c16_req_per_s", "5   16 concurrent: throughput", "req/s"),
        Figure("s5_fleet_p50_ms", "5   fleet endpoint over the day: median", "ms"),
        Figure("s5_fleet_max_ms", "5   fleet endpoint: slowest of 6", "ms", ("<=", 1000)),
    )

    def prepare(self) -> None:
        day = self.day = self.bench.backfilled_day()
        self.window = f"from={iso(day.start)}&to={iso(day.end)}"
        path_format = f"/v1/analytics/performance/V-%0{day.vehicle_width}d?{self.window}"
        # Sanity: the window holds a full day for a vehicle.
        status, body = self.bench.stack.get(path_format % 1, OPERATOR_TOKEN)
        if status != 200:
            raise RuntimeError(f"analytics answered {status}: {body[:300]!r}")
        log(f"scenario 5: analytics over {iso(day.start)}..{iso(day.end)}, random "
            f"vehicles of {day.vehicles:,}; e.g. {day.vehicle_id(1)}: {json.loads(body)['readings']}")
        self.wrk_args = ["-s", "bench/wrk/get.lua", self.bench.stack.url, "--", OPERATOR_TOKEN,
                         path_format, str(day.vehicles)]
        run_wrk(self.wrk_args, 3, 2, 16)  # warm-up

    def run(self, i: int) -> dict:
        cpu = self.bench.cpu
        cpu.start()
        seq = run_wrk(self.wrk_args, self.size("s5_s"), 1, 1)
        seq_cpu = cpu.stop()
        cpu.start()
        conc = run_wrk(self.wrk_args, self.size("s5_s"), 2, 16)
        conc_cpu = cpu.stop()
        x = {
            "seq_p50_ms": seq["p50_us"] / 1000, "seq_p99_ms": seq["p99_us"] / 1000,
            "seq_req_per_s": seq["ok"] / seq["seconds"], "seq_non_200": seq["status_errors"],
            "c16_p50_ms": conc["p50_us"] / 1000, "c16_p99_ms": conc["p99_us"] / 1000,
            "c16_req_per_s": conc["ok"] / conc["seconds"], "c16_non_200": conc["status_errors"],
            "seq_cpu_pct": seq_cpu, "c16_cpu_pct": conc_cpu,
            "wrk_cpu_pct_of_threads": max(seq["cpu_pct_of_threads"], conc["cpu_pct_of_threads"]),
        }
        log(f"  run {i + 1}: sequential p50 {x['seq_p50_ms']:.2f} ms, p99 {x['seq_p99_ms']:.2f} ms "
            f"({x['seq_req_per_s']:,.0f} req/s); 16 concurrent p50 {x['c16_p50_ms']:.2f} ms, "
            f"p99 {x['c16_p99_ms']:.2f} ms ({x['c16_req_per_s']:,.0f} req/s); "
            f"CPU at 16: {conc_cpu}")
        return x

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        figures = {f"s5_{key}": round(median_of(runs, key), 2)
                   for key in ("seq_p50_ms", "seq_p99_ms", "c16_p50_ms", "c16_p99_ms")}
        figures["s5_c16_req_per_s"] = round(median_of(runs, "c16_req_per_s"))
        return figures

    def record(self, runs: list[dict]) -> None:
        super().record(runs)
        self.bench.details["s5_split"] = analytics_split(self.day)
        self.bench.figures.update(fleet_timings(self.bench.stack, self.window))


def fleet_timings(stack: Stack, window: str) -> dict[str, float]:
    """GET /v1/analytics/fleet over the whole day (issue 4: within a second), sequentially."""
    path = f"/v1/analytics/fleet?{window}&sort=efficiency&limit=100"
    took = []
    for _ in range(FLEET_CALLS):
        t = time.perf_counter()
        status, body = stack.get(path, OPERATOR_TOKEN)
        took.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise RuntimeError(f"fleet answered {status}: {body[:300]!r}")
    vehicles = json.loads(body)["totals"]["vehicles"]
    figures = {"s5_fleet_p50_ms": round(statistics.median(took[1:]), 1),
               "s5_fleet_max_ms": round(max(took[1:]), 1)}
    log(f"  fleet over the day ({vehicles:,} vehicles): median {figures['s5_fleet_p50_ms']} ms, "
        f"slowest {figures['s5_fleet_max_ms']} ms")
    return figures


def analytics_split(day: Day) -> dict:
    """Where an analytics request's time goes: SQL alone (EXPLAIN ANALYZE), the query
    from Python (SQLAlchemy, pool, driver), and HTTP (wrk, above)."""
    engine = create_db_engine(DATABASE_URL)
    rng = random.Random(7)
    ids = [day.vehicle_id(rng.randint(1, day.vehicles)) for _ in range(300)]
    planning, execution, hits, reads = [], [], [], []
    try:
        with engine.connect() as conn:
            split = split_window(day.start, day.end, rollup_marks(conn))
            window, statement = split.params(), PERFORMANCE[False, reads_history(split)]
            for vid in ids[:30]:
                params = {"vehicle_id": vid, **window}
                plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                                         + statement.text), params).scalar_one()[0]
                planning.append(plan["Planning Time"])
                execution.append(plan["Execution Time"])
                hits.append(plan["Plan"].get("Shared Hit Blocks", 0))
                reads.append(plan["Plan"].get("Shared Read Blocks", 0))
            plan_text = "\n".join(r[0] for r in conn.execute(
                text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement.text),
                {"vehicle_id": ids[0], **window}))
        in_process = []
        for vid in ids:
            t = time.perf_counter()
            vehicle_performance(engine, vid, day.start, day.end)
            in_process.append((time.perf_counter() - t) * 1000)
    finally:
        engine.dispose()
    split = {
        "sql_planning_ms_p50": round(statistics.median(planning), 3),
        "sql_execution_ms_p50": round(statistics.median(execution), 3),
        "sql_execution_ms_p99": round(percentile(execution, 99), 3),
        "shared_buffers_hit_p50": statistics.median(hits),
        "shared_buffers_read_p50": statistics.median(reads),
        "python_call_ms_p50": round(statistics.median(in_process[20:]), 3),
        "python_call_ms_p99": round(percentile(in_process[20:], 99), 3),
        "plan_example": plan_text,
    }
    log(f"  split: SQL planning {split['sql_planning_ms_p50']} ms + execution "
        f"{split['sql_execution_ms_p50']} ms (p50, EXPLAIN ANALYZE, {len(execution)} vehicles); "
        f"vehicle_performance() from Python {split['python_call_ms_p50']} ms p50 / "
        f"{split['python_call_ms_p99']} ms p99; the rest of the HTTP figure is Flask, gunicorn, TCP")
    return split


SCENARIO = Analytics
