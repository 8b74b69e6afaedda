"""python -m simulator {live,backfill} ...: see simulator/README_SECTION.md."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from settings import load_or_exit
from simulator import backfill


def timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. a trailing Z): {value!r}")
    return parsed


def positive(kind):
    def parse(value: str):
        number = kind(value)
        if not number > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
        return number
    return parse


def not_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def share(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulate a fleet of EVs and the smart meters that charge them.",
    )
    modes = top.add_subparsers(dest="mode", required=True)

    fleet_args = argparse.ArgumentParser(add_help=False)
    fleet_args.add_argument("--vehicles", type=positive(int), default=100,
                            help="vehicles V-1 .. V-N, zero-padded to the width of N (V-001 .. V-100)")
    fleet_args.add_argument("--meters", type=not_negative, default=100,
                            help="meters M-1 .. M-N, zero-padded likewise; meter i feeds vehicle i")
    fleet_args.add_argument("--seed", type=int, default=1, help="same seed, same fleet and readings")
    fleet_args.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                            help="no progress bar (default: one when stderr is a terminal)")

    b = modes.add_parser(
        "backfill", parents=[fleet_args],
        help="write hours of history for the whole fleet straight into the database",
        description="Write one reading per device per minute for the HOURS before END into "
                    "PostgreSQL with COPY, link meter i to vehicle i from the window's start, "
                    "update live state, rebuild the hourly rollups, and ANALYZE.",
    )
    b.add_argument("--hours", type=positive(float), default=24.0)
    b.add_argument("--end", type=timestamp, default=None,
                   help="RFC 3339, floored to the minute (default: now)")
    b.add_argument("--degraded", type=not_negative, default=20,
                   help="vehicles whose efficiency is below the alert threshold (0.70-0.80)")
    b.add_argument("--database-url", default=None,
                   help="default: $DATABASE_URL, else postgresql://localhost/energy")

    live = modes.add_parser(
        "live", parents=[fleet_args],
        help="post readings over HTTP (or publish them over MQTT) to a running instance, "
             "in real time or faster",
        description="POST the fleet's readings to /v1/ingest: one per device per simulated "
                    "minute, at up to RATE readings per second in total.",
    )
    live.add_argument("--url", default="http://localhost:8000")
    live.add_argument("--token", default="dev-ingest-token",
                      help="fleet-wide ingest token (unused with --provision)")
    live.add_argument("--provision", action="store_true",
                      help="register every device and gateway first (existing ones get new "
                           "tokens), then post with per-device and per-gateway tokens")
    live.add_argument("--operator-token", default="dev-operator-token",
                      help="operator token, to link each meter to its vehicle first and to find"
                           " where stored history ends (live continues after it)")
    live.add_argument("--no-link", dest="link", action="store_false",
                      help="do not PUT the meter links first")
    live.add_argument("--rate", type=positive(float), default=200.0,
                      help="most readings per second in total")
    live.add_argument("--duration", type=positive(float), default=None,
                      help="seconds to run (default: until Ctrl-C)")
    live.add_argument("--speed", type=positive(float), default=1.0,
                      help="simulated seconds per real second (60: a simulated minute a second)")
    live.add_argument("--gateway-size", type=positive(int), default=50,
                      help="devices behind one gateway, which posts their readings as one array")
    live.add_argument("--gateway-share", type=share, default=0.5,
                      help="share of the devices behind gateways; the rest post single readings")
    live.add_argument("--degraded", type=not_negative, default=2)
    live.add_argument("--concurrency", type=positive(int), default=16,
                      help="most requests in flight at once")
    live.add_argument("--mqtt", metavar="URL", default=None,
                      help="publish the readings to this MQTT broker (mqtt[s]://[user:password@]host:port), "
                           "each on its device's topic, instead of POSTing them; --url still links "
                           "the meters")
    return top


def main(argv: list[str] | None = None) -> int:
    load_or_exit()  # like every process: a bad setting stops it with one line, status 2
    args = parser().parse_args(argv)
    if args.degraded > args.vehicles:
        parser().error(f"--degraded ({args.degraded}) is more than --vehicles ({args.vehicles})")
    if args.mode == "backfill":
        try:
            summary = backfill.run(
                args.database_url or backfill.default_database_url(), args.vehicles, args.meters,
                args.hours, args.end, args.degraded, args.seed, args.progress,
            )
        except KeyboardInterrupt:
            print("backfill interrupted: the pieces committed so far stay; run the same command "
                  "again to finish (readings already stored are kept)", file=sys.stderr)
            return 130
        print(summary.report())
        return 0
    from simulator import live as live_mode

    summary = live_mode.run(live_mode.Options.from_args(args))
    print(summary.report())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
