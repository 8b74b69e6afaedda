"""What a scenario is: the class every module in bench/scenarios/ subclasses.

The run loop (Bench.run, bench/runner.py) takes the chosen scenarios in number
order and, for each:

1. starts or stops the Celery worker, as `worker` asks;
2. calls prepare(): log what is measured, take fixtures (bench.backfilled_day()),
   warm up;
3. `--runs` times (once if not `repeated`): before_run(), then, if `timed`, a
   CHECKPOINT and a wait for a quiet machine, then run(i), which measures one
   run, logs a line and returns the run's values;
4. calls cleanup(), also when a run failed;
5. calls record(runs): by default the figures of summarize(runs) (medians)
   and the runs themselves under details `sN_runs` in results.json.

A scenario declares the rows it adds to the report's table (`table`, with the
issue's targets) and the sizes it takes (`sizes`: full and --quick values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from bench.runner import Bench


@dataclass(frozen=True)
class Figure:
    """A row of the report's table: the figure's key in results.json, its label, its unit,
    and the target it must meet, as (comparison, value), if any."""

    key: str
    label: str
    unit: str
    target: tuple[str, object] | None = None


class Scenario:
    number: ClassVar[int]  # as --scenarios names it, and the order of the runs
    worker: ClassVar[bool] = False  # the worker runs during it (False: stopped)
    always: ClassVar[bool] = False  # runs whatever --scenarios says
    repeated: ClassVar[bool] = True  # measured --runs times (False: once)
    timed: ClassVar[bool] = True  # each run waits for a quiet machine first
    sizes: ClassVar[dict[str, tuple[float, float]]] = {}  # name: (full, --quick)
    table: ClassVar[tuple[Figure, ...]] = ()

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def size(self, name: str) -> float:
        """One of the sizes of this run (full or --quick)."""
        return self.bench.sizes[name]

    def prepare(self) -> None:
        """Before the runs: say what is measured, warm up."""

    def before_run(self) -> None:
        """Before each run: put the stack in the state a run starts from."""

    def run(self, i: int) -> dict:
        """Measure run i (from 0), log a line, return its values."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """After the runs, even failed ones: release what prepare() took."""

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        """The figures of the runs (medians, see bench.stats.median_of)."""
        return {}

    def record(self, runs: list[dict]) -> None:
        """Put the figures and the runs in the results."""
        self.bench.figures.update(self.summarize(runs))
        self.bench.details[f"s{self.number}_runs"] = runs


class Acceptance(Scenario):
    """Ingest acceptance alone: the worker is stopped, and each run starts on an empty queue."""

    def before_run(self) -> None:
        self.bench.fresh_queue()

    def cleanup(self) -> None:
        self.bench.fresh_queue()


def wrk_run(result: dict) -> dict:
    """A run's values common to every scenario measured with wrk."""
    return {"req_per_s": result["ok"] / result["seconds"], "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000, "non_202": result["status_errors"],
            "wrk_cpu_pct_of_threads": result["cpu_pct_of_threads"], "cpu_pct": result["cpu_pct"]}
